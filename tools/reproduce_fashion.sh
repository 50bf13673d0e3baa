#!/usr/bin/env bash
# Reproduce the main rows of benchmarks/mbe/results/fashion.md: prepare the data once, then
# train and score each requested run. Every step is skipped when its output already exists
# (and `moon train --resume` continues an interrupted training), so re-running the script
# after a crash or Ctrl-C picks up where it stopped.
#
#   tools/reproduce_fashion.sh CATALOGUE RUN [RUN ...]
#
# CATALOGUE is a fashion-catalogue folder (styles.csv + images/). Each RUN is KIND:SEED with
# KIND one of moon, openclip, no-moe, no-crops, inbatch-only, e.g. `moon:0 openclip:0 moon:1`.
# Outputs: data/ (shared inputs), runs/fashion-KIND-sSEED/{model,RESULTS.json}.
# Set THREADS=1 to run two copies of the script side by side on a 2-core machine.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
catalogue=$1
shift
[[ -f "$catalogue/styles.csv" ]] || { echo "error: $catalogue/styles.csv not found (expected a fashion-catalogue folder)" >&2; exit 2; }

cd "$(dirname "$0")/.."
export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
threads=${THREADS:-}
detector=runs/detector-mbe-synth

# Shared inputs. A lock keeps two copies of the script from preparing them at the same time.
mkdir -p runs
exec 9>runs/.reproduce-fashion.lock
flock 9
[[ -f data/mbe-synth/manifest.json ]] || moon data synth --products 1500 --out data/mbe-synth
[[ -f $detector/detector.json ]] || moon crop train --data data/mbe-synth --out $detector
[[ -f data/fashion/manifest.json ]] || moon data import fashion "$catalogue" --out data/fashion
[[ -f data/fashion-cropped/manifest.json ]] || \
    moon crop run --detector $detector --data data/fashion --out data/fashion-cropped
[[ -f data/fashion-negatives.parquet ]] || \
    moon mine --model fallback --data data/fashion-cropped --out data/fashion-negatives.parquet --k 8
flock -u 9

for spec in "$@"; do
    kind=${spec%%:*}
    seed=${spec#*:}
    [[ $seed =~ ^[0-9]+$ && $spec == *:* ]] || { echo "error: run '$spec': expected KIND:SEED, e.g. moon:0" >&2; exit 2; }
    bench_args=(--detector "$detector")
    case $kind in
        moon) recipe=recipes/fashion-cpu.yaml ;;
        openclip) recipe=recipes/fashion-openclip-cpu.yaml; bench_args=() ;;
        no-moe | no-crops | inbatch-only) recipe=recipes/fashion-cpu-$kind.yaml ;;
        *) echo "error: run '$spec': unknown kind '$kind' (moon, openclip, no-moe, no-crops, inbatch-only)" >&2; exit 2 ;;
    esac
    out=runs/fashion-$kind-s$seed
    overrides=("run.seed=$seed")
    [[ -n $threads ]] && overrides+=("run.threads=$threads")
    if [[ ! -f $out/summary.json ]]; then   # written last by a finished training
        resume=()
        compgen -G "$out/checkpoints/step-*[0-9]" >/dev/null && resume=(--resume)
        moon train "$recipe" "${overrides[@]}" --out "$out" "${resume[@]}"
    fi
    [[ -f $out/RESULTS.json ]] || moon bench fashion --catalogue "$catalogue" --model "$out/model" \
        "${bench_args[@]}" --out "$out/RESULTS.json" --per-category --category-level 2
done
