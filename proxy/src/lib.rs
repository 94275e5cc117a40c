//! The reverse proxy behind `engine proxy` (issue 6). Not built yet: this crate holds the
//! place in the workspace so the layout of DESIGN.md is in force from the start.
