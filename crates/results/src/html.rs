//! A run's page: one self-contained file with plots (uPlot, inlined) of a run's summary. The
//! same page is report.html (the summary embedded) and, with the live parts the blast adds,
//! the live page of `engine blast --dashboard` (the summary so far, redrawn each second).

const UPLOT_JS: &str = include_str!("../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/uplot/uPlot.min.css");
const REPORT_JS: &str = include_str!("../assets/report.js");

/// The page for a summary JSON text. The JSON sits in a `<script type="application/json">`,
/// so only `</` needs escaping for the HTML parser.
pub fn render(summary_json: &str) -> String {
    page(summary_json, "", "")
}

/// The page with `top` (HTML) above the report and `scripts` (HTML) after report.js, for a
/// page that feeds the report itself (`summary_json` may then be empty).
pub fn page(summary_json: &str, top: &str, scripts: &str) -> String {
    let data = summary_json.replace("</", "<\\/");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>engine blast report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{UPLOT_CSS}
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 20px; color: #222; }}
table {{ border-collapse: collapse; margin: 4px 0 12px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
h2 {{ font-size: 16px; margin: 20px 0 6px; }}
</style></head>
<body><h1 id="title">engine blast</h1>{top}<div id="main"></div>
<script type="application/json" id="summary">{data}</script>
<script>{UPLOT_JS}</script>
<script>{REPORT_JS}</script>{scripts}
</body></html>
"#
    )
}
