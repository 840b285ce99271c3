# Skips that ctest sees (sourced by common.bash and by tests that do not use it; not a test itself).
# A test that could not run a part for want of a shared file or an optional tool exits with
# ML_SKIP_CODE (ctest's SKIP_RETURN_CODE for every entry) once nothing failed, naming what was missing.
#   need_shared PATH...   0 if every path exists under the shared data; else records the skip and
#                         returns 1 (with ML_REQUIRE_SHARED=1: prints FAIL and exits 1 at once)
#   skip_part WHY         records a skipped part (an optional tool, a CPU feature, no network)
#   skip_exit             exits with ML_SKIP_CODE, listing the reasons, if anything was skipped
# SHARED is $ML_SHARED_DIR, else ../shared beside the source tree ($SRC).
ML_SKIP_CODE=77
SHARED="${ML_SHARED_DIR:-${SRC:-.}/../shared}"
skipped_parts=()

skip_part() {
    echo "SKIP: $*"
    skipped_parts+=("$*")
}

need_shared() {
    local p missing=0
    for p in "$@"; do
        [ -e "$p" ] && continue
        if [ -n "${ML_REQUIRE_SHARED:-}" ] && [ "${ML_REQUIRE_SHARED}" != 0 ]; then
            echo "FAIL: missing shared file $p (ML_REQUIRE_SHARED is set; ML_SHARED_DIR=$SHARED)" >&2
            exit 1
        fi
        skip_part "missing shared file $p"
        missing=1
    done
    return $missing
}

skip_exit() {
    local IFS=';'
    if [ ${#skipped_parts[@]} -gt 0 ]; then
        echo "skipped parts (${#skipped_parts[@]}): ${skipped_parts[*]}"
        exit $ML_SKIP_CODE
    fi
}
