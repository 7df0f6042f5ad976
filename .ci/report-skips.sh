#!/usr/bin/env bash
# Usage: .ci/report-skips.sh BUILD_DIR
# Lists every test automake recorded as skipped under BUILD_DIR (its .trs files), each with the
# reason the test printed ("SKIP: reason" in its .log, the convention of tests/lib.sh), and exits
# 1 when some skip states no reason: a silent skip hides a test that never ran. Exit 0 otherwise
# (also when nothing was skipped); exit 2 when BUILD_DIR has no test results at all.
set -uo pipefail
dir=${1:?usage: $0 BUILD_DIR}
mapfile -t trs < <(find "$dir" -name '*.trs' -not -path '*/tests/work/*' 2>/dev/null | LC_ALL=C sort)
if [ "${#trs[@]}" -eq 0 ]; then
    echo "report-skips: no test results (*.trs) under $dir"
    exit 2
fi
skipped=0 silent=0
for t in "${trs[@]}"; do
    grep -q '^:test-result: SKIP' "$t" || continue
    skipped=$((skipped + 1))
    log=${t%.trs}.log
    name=${t#"$dir"/}
    name=${name%.trs}
    # the test's own line; the driver's closing "SKIP name (exit status: 77)" has no colon
    reason=$(grep -m1 '^SKIP: *[^ ]' "$log" 2>/dev/null | sed 's/^SKIP: *//')
    if [ -n "$reason" ]; then
        echo "SKIP: $name: $reason"
    else
        echo "SKIP WITHOUT A REASON: $name (it must print 'SKIP: why' before exit 77; see $log)"
        silent=$((silent + 1))
    fi
done
echo "report-skips: $skipped skipped, $silent without a reason"
[ "$silent" -eq 0 ]
