#!/usr/bin/env bash
# Fuzzing: the cargo-fuzz targets of webhook/core/fuzz (libFuzzer +
# AddressSanitizer, on the stable toolchain through RUSTC_BOOTSTRAP=1), each
# seeded from the repository's test data and run for FUZZ_TIME seconds.
# Fails on any crash, assertion or timeout; prints the runs of every target.
#
#   bash e2e/fuzz.sh                      # every target, 20 s each, 2 at a time
#   FUZZ_TIME=300 bash e2e/fuzz.sh reference policy
#
# Environment: FUZZ_TIME (seconds per target, default 20), FUZZ_JOBS (targets
# run at once, default: the number of cores). Build, corpora, crash inputs and
# logs go under target/fuzz/ (not committed); corpora grow from run to run.
# A crash input lands in target/fuzz/artifacts/<target>/; reproduce it with
#   target/fuzz/build/x86_64-unknown-linux-gnu/release/<target> <file>
# and keep it as a regression test (testdata/fuzz-regressions/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

fuzz_dir=webhook/core/fuzz
out=target/fuzz
time_per_target="${FUZZ_TIME:-20}"
jobs="${FUZZ_JOBS:-$(nproc)}"
seed_max_bytes=65536
all_targets=(
    findings_trivy findings_grype findings_sarif findings_cyclonedx
    findings_intoto findings_cosign findings_openvex findings_auto
    reference pattern www_authenticate docker_config admission policy
)
if (($# > 0)); then targets=("$@"); else targets=("${all_targets[@]}"); fi
export RUSTC_BOOTSTRAP=1
step_start=$SECONDS

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    t=$SECONDS
    cargo install --locked cargo-fuzz
    echo "cargo-fuzz installed in $((SECONDS - t)) s"
fi

echo "== fuzz crate: formatting and lock file"
cargo fmt --manifest-path "$fuzz_dir/Cargo.toml" -- --check
cargo metadata --locked --format-version 1 --manifest-path "$fuzz_dir/Cargo.toml" >/dev/null

echo "== building the fuzz targets (libFuzzer + AddressSanitizer)"
t=$SECONDS
# Sixteen codegen units instead of cargo-fuzz's one, so the optimised crates
# build on every core (see the profile in webhook/core/fuzz/Cargo.toml).
cargo fuzz build --fuzz-dir "$fuzz_dir" --target-dir "$out/build" --codegen-units 16
echo "built in $((SECONDS - t)) s"
bin_dir="$out/build/x86_64-unknown-linux-gnu/release"

echo "== seeding the corpora from the test data"
seed() { # target, files or directories...
    local dir="$out/corpus/$1" f
    shift
    mkdir -p "$dir"
    for f in $(find "$@" -type f -size -"$((seed_max_bytes + 1))"c | sort); do
        [[ -e "$dir/seed-$(basename "$f")" ]] || cp "$f" "$dir/seed-$(basename "$f")"
    done
}
seed_lines() { # target, file (one input per line; TABs become newlines)
    local dir="$out/corpus/$1" n=0 line
    mkdir -p "$dir"
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        printf '%s' "${line//$'\t'/$'\n'}" > "$dir/seed-$(basename "$2" .txt)-$n"
    done < "$2"
}
td=testdata
seeds="$fuzz_dir/seeds"
for target in "${targets[@]}"; do
    case $target in
        findings_trivy) seed "$target" $td/trivy-json ;;
        findings_grype) seed "$target" $td/grype-json ;;
        findings_sarif) seed "$target" $td/trivy-sarif $td/grype-sarif ;;
        findings_cyclonedx) seed "$target" $td/trivy-cyclonedx $td/vex/cyclonedx-* ;;
        findings_intoto) seed "$target" $td/intoto-vulns $td/cosign-vuln-attestation $td/signed/dsse ;;
        findings_cosign) seed "$target" $td/cosign-vuln-attestation $td/signed/dsse ;;
        findings_openvex) seed "$target" $td/vex $td/signed/vex ;;
        findings_auto)
            seed "$target" $td/trivy-json $td/grype-json $td/trivy-sarif $td/grype-sarif \
                $td/trivy-cyclonedx $td/intoto-vulns $td/cosign-vuln-attestation $td/vex \
                $td/signed/dsse $td/signed/vex
            ;;
        reference)
            seed_lines "$target" "$seeds/image-refs.txt"
            # The images of the AdmissionReview samples.
            grep -hoE '"(image|reference)": *"[^"]*"' $td/admission-review/* | sed -E 's/^[^:]*: *"//; s/"$//' |
                sort -u > "$out/corpus/review-images.txt"
            seed_lines "$target" "$out/corpus/review-images.txt"
            ;;
        pattern) seed_lines "$target" "$seeds/patterns.txt" ;;
        www_authenticate) seed_lines "$target" "$seeds/challenges.txt" ;;
        docker_config) seed "$target" "$seeds/docker-config" ;;
        admission) seed "$target" $td/admission-review ;;
        policy) seed "$target" config/samples config/rule-documents ;;
        *) echo "unknown fuzz target $target" >&2; exit 2 ;;
    esac
    # Each JSON Lines seed also as one input per line.
    for f in "$out/corpus/$target"/seed-*.jsonl; do
        [[ -e $f ]] && split -l 1 -d "$f" "${f%.jsonl}-line-"
    done
    # Inputs that crashed once stay in the corpus.
    if [[ -d testdata/fuzz-regressions/$target ]]; then
        seed "$target" "testdata/fuzz-regressions/$target"
    fi
done

dict_of() {
    case $1 in
        findings_* | admission | docker_config) echo "$fuzz_dir/dict/json.dict" ;;
        reference | pattern) echo "$fuzz_dir/dict/image-ref.dict" ;;
        www_authenticate) echo "$fuzz_dir/dict/challenge.dict" ;;
        policy) echo "$fuzz_dir/dict/yaml.dict" ;;
    esac
}

run_one() { # target
    local target=$1 log="$out/logs/$1.log"
    mkdir -p "$out/artifacts/$target"
    set +e
    "$bin_dir/$target" "$out/corpus/$target" \
        -max_total_time="$time_per_target" -timeout=25 -rss_limit_mb=2048 \
        -dict="$(dict_of "$target")" -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$target/" > "$log" 2>&1
    echo $? > "$out/logs/$target.rc"
}

echo "== fuzzing ${#targets[@]} targets, ${time_per_target} s each, $jobs at a time"
rm -rf "$out/logs"
mkdir -p "$out/logs"
export out bin_dir time_per_target fuzz_dir
export -f run_one dict_of
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'

failed=()
printf '%-20s %12s %10s %8s  %s\n' target runs runs/s corpus result
for target in "${targets[@]}"; do
    log="$out/logs/$target.log"
    rc=$(cat "$out/logs/$target.rc" 2>/dev/null || echo 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "$out/corpus/$target" -type f | wc -l)
    result=ok
    if [[ $rc != 0 ]]; then
        result="FAILED (exit $rc, log $log)"
        failed+=("$target")
    fi
    printf '%-20s %12s %10s %8s  %s\n' "$target" "${runs:-?}" "${rate:-?}" "$corpus" "$result"
done
echo "fuzz step took $((SECONDS - step_start)) s"
if ((${#failed[@]} > 0)); then
    for target in "${failed[@]}"; do
        echo "== $target"
        grep -E -A25 'panicked|ERROR: (AddressSanitizer|libFuzzer)|==[0-9]+==' "$out/logs/$target.log" | head -60 || tail -40 "$out/logs/$target.log"
        ls "$out/artifacts/$target"
    done
    echo "fuzzing found ${#failed[@]} failing target(s): ${failed[*]}" >&2
    exit 1
fi
