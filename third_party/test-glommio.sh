#!/usr/bin/env bash
# glommio's own unit tests, on the vendored tree, as far as this machine can run them.
# Skipped, with why (each fails here whatever the patches: see the list's reasons):
#   io::dma_file, io::immutable_file, io::sched::test::file_simple_dedup_concurrent:
#     O_DIRECT reads through io_uring answer EOPNOTSUPP on this VM's block device.
#   net::tcp_socket::tests::tcp_connect_timeout_error: connects to an unroutable address to
#     see a timeout; the sandbox has no route at all, so the connect fails at once instead.
#   executor::test::test_dynamic_shares: checks CPU shares of two task queues to within a
#     few percent over a short run; on a shared 2-vCPU VM the split varies more than that.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/glommio"
cargo test --quiet --lib -- \
    --skip io::dma_file::test:: \
    --skip io::immutable_file::test:: \
    --skip io::sched::test::file_simple_dedup_concurrent \
    --skip net::tcp_socket::tests::tcp_connect_timeout_error \
    --skip executor::test::test_dynamic_shares
