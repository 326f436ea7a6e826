#!/usr/bin/env bash
# Fault drill: runs the command lines against the faults a long training job meets and prints one line per case,
# "PASS <case>: <what happened>" or "FAIL <case>: <what happened>". Exits non-zero if any case fails.
#
#   scripts/fault_drill.sh            (from anywhere; uses the repository's .venv; takes several minutes on a CPU)
#   KEEP=1 scripts/fault_drill.sh     keeps the working folder for inspection
#   ONLY="outputs inputs" scripts/fault_drill.sh   runs only those sections (names in the "# ---" headers)
#   QUICK=1 scripts/fault_drill.sh   only the first case of each section (the default test suite runs this)
set -u

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
REAL_PY="$PY"
SECTION_REPORTED=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fault_drill.XXXXXX")"
FAILED=0
cd "$REPO" || exit 2
IMMUTABLE=()  # files made unwritable for root with chattr +i: rm -rf cannot remove them until undone
cleanup() {
    for file in "${IMMUTABLE[@]}"; do chattr -i "$file" 2>/dev/null; done
    [[ -n "${KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n "${KEEP:-}" ]] && echo "working folder: $WORK"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true
unset WANDB_API_KEY

# The smallest settings that exercise every code path (as tests/conftest.py's tiny_pretrain_overrides).
tiny() {  # tiny RUNS_DIR RUN
    echo "runs_dir=$1 run=$2 data.source=synthetic data.crop_size=32 data.synthetic_size=48" \
        "data.synthetic_train_images=16 data.synthetic_val_images=8 data.batch_size=4 data.num_workers=0" \
        "model.kwargs.width=0.125 trainer.accelerator=cpu trainer.max_steps=4 trainer.val_check_interval=2" \
        "trainer.log_every_n_steps=1 trainer.progress_bar=false logger.kind=csv num_val_images_logged=2"
}

PASSED_CASES=0
FAILED_CASES=0
report() {  # report CASE OK(0/1) MESSAGE
    # QUICK: once a section's first case is reported, its later commands run nothing ("$PY" is true) and say nothing.
    [[ -n "${QUICK:-}" && $SECTION_REPORTED == 1 ]] && return
    SECTION_REPORTED=1
    [[ -n "${QUICK:-}" ]] && PY=true
    if [[ "$2" == 0 ]]; then
        echo "PASS $1: $3"; PASSED_CASES=$((PASSED_CASES + 1))
    else
        echo "FAIL $1: $3"; FAILED=1; FAILED_CASES=$((FAILED_CASES + 1))
    fi
}

# Runs a command; sets RC, OUT (stdout+stderr) and ERRLINES (its "error:" lines).
run() {
    OUT="$("$@" 2>&1)"
    RC=$?
    ERRLINES="$(grep '^error:' <<<"$OUT")"
}

# A user error: exit status 2, exactly one "error:" line containing every later argument, no traceback.
expect_one_line_error() {  # expect_one_line_error CASE TEXT... (after run)
    local case="$1" text
    shift
    if [[ $RC != 2 ]]; then report "$case" 1 "exit status $RC, expected 2: $(tail -c 400 <<<"$OUT")"; return; fi
    if [[ $(grep -c '^error:' <<<"$OUT") != 1 ]] || grep -q Traceback <<<"$OUT"; then
        report "$case" 1 "not a single error line: $(grep -A3 -m1 '^error:' <<<"$OUT" | tr '\n' '|' | cut -c1-300)"
        return
    fi
    for text in "$@"; do
        if ! grep -qF -- "$text" <<<"$ERRLINES"; then report "$case" 1 "error line lacks '$text': $ERRLINES"; return; fi
    done
    report "$case" 0 "$(cut -c1-200 <<<"$ERRLINES")"
}

# Whether the section NAME runs: all of them, unless ONLY lists some. A section that runs starts afresh (QUICK).
want() {
    [[ -z "${ONLY:-}" || " $ONLY " == *" $1 "* ]] || return 1
    PY="$REAL_PY"
    SECTION_REPORTED=0
}

# Makes FILE refuse writes, for root too (root ignores the permission bits; the immutable flag binds it).
unwritable() {
    chmod a-w "$1"
    if [[ $(id -u) == 0 ]] && chattr +i "$1" 2>/dev/null; then IMMUTABLE+=("$1"); fi
}

# The inputs of the hostile-input sections (tests/faults/test_fault_inputs.py), each written once, on first use.
need() {  # need weights|voc|colorize|gray|links|photo|shards|study
    [[ -e "$WORK/.made_$1" ]] && return
    local code="from pathlib import Path; import tests.faults.test_fault_inputs as f; w = Path('$WORK')"
    case $1 in
        weights) code+="; f.write_bad_weights(w / 'weights')" ;;
        voc) code+="; f.write_hostile_voc(f.tiny_voc(w / 'voc_cache'), w / 'voc_bad')" ;;
        colorize) code+="; f.write_colorize_inputs(w / 'in')" ;;
        gray) code+="; f.write_gray_training_set(w / 'gray')" ;;
        links) code+="; f.write_symlink_trees(w / 'links')" ;;
        photo) code+="; from PIL import Image; Image.new('RGB', (16, 16), (200, 30, 30)).save(w / 'red.png')" ;;
        shards) code+="; from tests.data.test_shard_safety import write_hostile_shards as s; s(w / 'shards')" ;;
    esac
    # Only a real write counts as made (QUICK turns the commands after a section's first case into no-ops).
    "$PY" -c "$code" && [[ "$PY" == "$REAL_PY" ]] && touch "$WORK/.made_$1"
}
# The smallest VOC runs (as tests/transfer/voc/test_voc_cls.py and test_voc_det.py), on a data.root ROOT.
voc_cls() { "$PY" -m transfer.cli.voc_cls "${voc_common[@]}" protocol=svm "svm.costs=[1]" image.resize=48 image.crop=40 "$@"; }
voc_det() {
    "$PY" -m transfer.cli.voc_det "${voc_common[@]}" detector.min_size=64 detector.max_size=96 \
        "detector.anchor_sizes=[16,32]" detector.representation_size=32 detector.freeze_backbone=true \
        trainer.max_steps=2 "$@"
}
voc_common=(ckpt="$WORK/weights/good.ckpt" runs_dir="$WORK/voc_runs" results="$WORK/voc_runs/results.jsonl"
    "data.classes=[car,cat,dog]" trainer.accelerator=cpu trainer.progress_bar=false logger.kind=none)

pretrain() { "$PY" -m lit_colorization.cli.pretrain "$@"; }
step_of() { "$PY" -c "from lit_colorization.store.checkpoint import read_checkpoint as r; print(r('$1').global_step)" 2>/dev/null; }

# ------------------------------------------------------------------ configs [configs]
if want configs; then
run pretrain $(tiny "$WORK/cfg" r) data.crop_szie=32
expect_one_line_error config-unknown-key "unknown config key 'data.crop_szie'" "did you mean: data.crop_size"
run "$PY" -m transfer.cli.probe ckpt=random runs_dir="$WORK/cfg" optim.lrr=0.1
expect_one_line_error probe-config-unknown-key "unknown config key 'optim.lrr'" "did you mean: optim.lr"
run pretrain $(tiny "$WORK/cfg" r) trainer.max_steps=ten
expect_one_line_error config-wrong-type "trainer.max_steps"
run pretrain $(tiny "$WORK/cfg" r) data.source=folder data.root="$WORK/no_such_folder"
expect_one_line_error config-missing-data "$WORK/no_such_folder"
[[ -e "$WORK/cfg" ]] && report config-nothing-started 1 "a bad config created $WORK/cfg" \
    || report config-nothing-started 0 "no run folder was created by any bad config"
fi

# ------------------------------------------------------------------ checkpoints [checkpoints]
if want checkpoints; then
"$PY" -c "from pathlib import Path; from tests.config.test_fault_configs import write_bad_checkpoints as w; w(Path('$WORK'))" \
    >/dev/null 2>&1 || report bad-checkpoints 1 "could not write the bad checkpoints"
"$PY" -c "from PIL import Image; Image.new('RGB', (16, 16), (200, 30, 30)).save('$WORK/photo.png')"
for kind in foreign truncated missing; do
    ckpt="$WORK/$kind.ckpt"
    run pretrain $(tiny "$WORK/ck" r) resume="$ckpt"
    expect_one_line_error "resume-$kind-checkpoint" "$ckpt"
    run "$PY" -m lit_colorization.cli.colorize --ckpt "$ckpt" --out "$WORK/colorized" "$WORK/photo.png"
    expect_one_line_error "colorize-$kind-checkpoint" "$ckpt"
    run "$PY" -m transfer.cli.probe ckpt="$ckpt" runs_dir="$WORK/ck" data.source=synthetic
    expect_one_line_error "probe-$kind-checkpoint" "$ckpt"
done
run pretrain $(tiny "$WORK/ck" r) resume="$WORK/alexnet.ckpt"
expect_one_line_error resume-other-network-checkpoint "$WORK/alexnet.ckpt" "alexnet"
fi

# ------------------------------------------------------------------ non-finite loss [nan]
if want nan; then
run pretrain $(tiny "$WORK" nan) optim.lr=1e30 trainer.max_steps=20 trainer.checkpoint_every_n_steps=1 logger.kind=none
expect_one_line_error nan-loss "loss is not finite"
nan_step="$(grep -o 'at step [0-9]*' <<<"$ERRLINES" | grep -o '[0-9]*')"
finite="$("$PY" -c "
import torch; from lit_colorization.store.checkpoint import read_checkpoint
c = read_checkpoint('$WORK/nan/checkpoints/last.ckpt')
print(c.global_step if all(bool(torch.isfinite(v).all()) for v in c.state_dict.values()) else 'nan')" 2>&1)"
[[ -n "$nan_step" && "$finite" == "$nan_step" ]] \
    && report nan-loss-checkpoint 0 "last.ckpt holds the finite weights of step $finite, the last good step" \
    || report nan-loss-checkpoint 1 "last.ckpt: '$finite', stopped at step '$nan_step'"
fi

# ------------------------------------------------------------------ hostile images [images]
if want images; then
"$PY" -c "from pathlib import Path; from tests.data.test_fault_images import write_training_set as w; w(Path('$WORK/hostile'))"
bad_files=(d_truncated.jpg e_empty.JPG g_text.jpeg i_bomb.png)
for workers in 0 2; do
    run pretrain $(tiny "$WORK" "hostile$workers") data.source=folder data.root="$WORK/hostile" \
        data.num_workers=$workers trainer.limit_val_batches=1
    logged=0
    for name in "${bad_files[@]}"; do grep -q "skipping unreadable image .*$name" <<<"$OUT" && logged=$((logged + 1)); done
    skipped="$("$PY" -c "
import csv, glob
rows = [r for p in sorted(glob.glob('$WORK/hostile$workers/csv/version_*/metrics.csv')) for r in csv.DictReader(open(p))]
print(' '.join(str(int(float(r['train/skipped_images']))) for r in rows if r.get('train/skipped_images')))" 2>&1)"
    if [[ $RC == 0 && $logged -ge 3 && -n "$skipped" && "${skipped##* }" -gt 0 ]]; then
        report "hostile-images-workers$workers" 0 "run completed; $logged of 4 bad files logged; train/skipped_images by step: $skipped"
    else
        report "hostile-images-workers$workers" 1 "exit $RC, $logged bad files logged, skipped '$skipped': $(tail -c 300 <<<"$OUT")"
    fi
    run pretrain $(tiny "$WORK" "strict$workers") data.source=folder data.root="$WORK/hostile" \
        data.num_workers=$workers data.strict=true
    expect_one_line_error "hostile-images-strict-workers$workers" "unreadable image $WORK/hostile/train/"
done
fi

# ------------------------------------------------------------------ SIGKILL and resume [sigkill]
if want sigkill; then
last="$WORK/killed/checkpoints/last.ckpt"
# A resume repeats the run's own settings (resume=auto refuses to change them, or to shorten the run): 400 steps.
killed_run=(trainer.max_steps=400 trainer.val_check_interval=1000 trainer.checkpoint_every_n_steps=1 logger.kind=none)
"$PY" -m lit_colorization.cli.pretrain $(tiny "$WORK" killed) "${killed_run[@]}" >"$WORK/killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
    [[ -f "$last" && "$(step_of "$last")" -ge 3 ]] 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
killed_at="$(step_of "$last")"
if [[ -z "$killed_at" ]]; then
    report sigkill-checkpoint-intact 1 "no readable last.ckpt after SIGKILL: $(tail -c 300 "$WORK/killed.log")"
else
    report sigkill-checkpoint-intact 0 "killed with SIGKILL; last.ckpt is readable, at step $killed_at"
    run pretrain $(tiny "$WORK" killed) "${killed_run[@]}" resume=auto
    resumed="$(step_of "$last")"
    stale="$(find "$WORK/killed/checkpoints" -name '.*.tmp' | wc -l)"
    [[ $RC == 0 && "$resumed" == 400 && $stale == 0 ]] \
        && report sigkill-resume 0 "resume=auto continued from step $killed_at to $resumed" \
        || report sigkill-resume 1 "exit $RC, step '$resumed', $stale stale temporary files: $(tail -c 300 <<<"$OUT")"
fi
fi

# ------------------------------------------------------------------ preemption (SIGTERM) and a second start [preemption]
if want preemption; then
last="$WORK/preempted/checkpoints/last.ckpt"
preempted_run=(trainer.max_steps=400 trainer.val_check_interval=1000 trainer.checkpoint_every_n_steps=2
    data.num_workers=1 logger.kind=none)
setsid "$PY" -m lit_colorization.cli.pretrain $(tiny "$WORK" preempted) "${preempted_run[@]}" \
    >"$WORK/preempted.log" 2>&1 &
pid=$!  # setsid runs the command in this process, the leader of a new process group
for _ in $(seq 600); do
    [[ -f "$last" && "$(step_of "$last")" -ge 2 ]] 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
done
run pretrain $(tiny "$WORK" preempted) "${preempted_run[@]}" resume=auto
expect_one_line_error run-in-use "this run is in use by process $pid on host $(hostname)"
kill -TERM -- -$pid 2>/dev/null  # the whole group, DataLoader worker included, as SLURM signals a job step
wait $pid
rc=$?
stopped_at="$(step_of "$last")"
[[ $rc == 75 && -n "$stopped_at" ]] && grep -q "SIGTERM: saved .* at step $stopped_at" "$WORK/preempted.log" \
    && report sigterm-saves 0 "SIGTERM: last.ckpt written at step $stopped_at, exit status 75" \
    || report sigterm-saves 1 "exit $rc, step '$stopped_at': $(tail -c 300 "$WORK/preempted.log")"
run pretrain $(tiny "$WORK" preempted) "${preempted_run[@]}" resume=auto
[[ $RC == 0 && "$(step_of "$last")" == 400 ]] \
    && report sigterm-resume 0 "resume=auto continued from step $stopped_at" \
    || report sigterm-resume 1 "exit $RC: $(tail -c 300 <<<"$OUT")"
fi

# ------------------------------------------------------------------ exact resume (with DataLoader workers) [resume]
if want resume; then
exact=(trainer.val_check_interval=3 trainer.limit_val_batches=1 "optim.milestones=[3]" data.num_workers=2 logger.kind=none)
run pretrain $(tiny "$WORK" whole) "${exact[@]}" trainer.max_steps=7
rc_whole=$RC
run pretrain $(tiny "$WORK" stopped) "${exact[@]}" trainer.max_steps=2
run pretrain $(tiny "$WORK" stopped) "${exact[@]}" trainer.max_steps=7 resume=auto
compare="$("$PY" -c "
import torch
a, b = (torch.load('$WORK/%s/checkpoints/last.ckpt' % r, weights_only=True) for r in ('whole', 'stopped'))
same = all(torch.allclose(a['state_dict'][k], b['state_dict'][k], rtol=0, atol=1e-6) for k in a['state_dict'])
oa, ob = a['optimizer_states'][0], b['optimizer_states'][0]
same &= all(float(oa['state'][i]['step']) == float(ob['state'][i]['step']) for i in oa['state'])
same &= oa['param_groups'][0]['lr'] == ob['param_groups'][0]['lr'] and a['global_step'] == b['global_step'] == 7
print('same' if same else 'different', len(a['state_dict']), oa['param_groups'][0]['lr'])" 2>&1 | tail -1)"
[[ $rc_whole == 0 && $RC == 0 && "$compare" == same* ]] \
    && report exact-resume 0 "stopped at step 2 and resumed to 7 = uninterrupted to 7 (weights, Adam steps, lr): $compare" \
    || report exact-resume 1 "exit $rc_whole/$RC: $compare"
fi

# ------------------------------------------------------------------ logger faults [loggers]
if want loggers; then
metrics_written() { compgen -G "$1/csv/version_*/metrics.csv" >/dev/null; }
run "$PY" -c "import sys; sys.modules['wandb'] = None; from lit_colorization.cli.pretrain import main; main()" \
    $(tiny "$WORK" nowandb) logger.kind=wandb trainer.max_steps=2
warned="$(grep -c 'wandb is not installed' <<<"$OUT")"
[[ $RC == 0 && $warned == 1 ]] && metrics_written "$WORK/nowandb" \
    && report wandb-not-installed 0 "training went on with CSV metrics after one warning" \
    || report wandb-not-installed 1 "exit $RC, $warned warnings: $(tail -c 300 <<<"$OUT")"
run env WANDB_API_KEY=0123456789abcdef0123456789abcdef01234567 WANDB_BASE_URL=http://127.0.0.1:9 \
    WANDB_INIT_TIMEOUT=5 WANDB_MODE=online "$PY" -m lit_colorization.cli.pretrain \
    $(tiny "$WORK" unreachable) logger.kind=wandb trainer.max_steps=2
warned="$(grep -c 'could not start an online run' <<<"$OUT")"
[[ $RC == 0 && $warned == 1 ]] && metrics_written "$WORK/unreachable" \
    && report wandb-unreachable 0 "W&B login but no server: training went on with CSV metrics after one warning" \
    || report wandb-unreachable 1 "exit $RC, $warned warnings: $(tail -c 300 <<<"$OUT")"
fi

# ------------------------------------------------------------------ outputs and results are never lost [outputs]
if want outputs; then
need colorize
need weights
colorize() { "$PY" -m lit_colorization.cli.colorize --ckpt "$WORK/weights/good.ckpt" --size 32 "$@"; }
clashing=("$WORK/in/A/x.jpg" "$WORK/in/B/x.jpg" "$WORK/in/C/p.jpg" "$WORK/in/C/p.png")
run colorize --out "$WORK/out_files" "${clashing[@]}"
first="$(grep '^colorized' <<<"$OUT")"
written="$(find "$WORK/out_files" -name '*.png' | wc -l)"
run colorize --out "$WORK/out_files" "${clashing[@]}"
again="$(grep '^colorized' <<<"$OUT")"
[[ $RC == 0 && $written == 4 && "$first" == "colorized 4 image"* && "$again" == *"kept 4 existing"* ]] \
    && report colorize-distinct-outputs 0 "4 inputs (A/x.jpg B/x.jpg C/p.jpg C/p.png), 4 outputs; rerun: $again" \
    || report colorize-distinct-outputs 1 "exit $RC, $written outputs; first run: '$first'; rerun: '$again'"

run colorize --out "$WORK/in/colorized" "$WORK/in"
run colorize --out "$WORK/in/colorized" "$WORK/in"
again="$(grep '^colorized' <<<"$OUT")"
[[ $RC == 0 && ! -e "$WORK/in/colorized/colorized" && "$again" == *"kept 4 existing"* ]] \
    && report colorize-out-inside-input 0 "the second run left its own outputs alone: $again" \
    || report colorize-out-inside-input 1 "exit $RC, $(find "$WORK/in/colorized" -name '*.png' | wc -l) files under --out: $again $(tail -c 200 <<<"$OUT")"

mkdir -p "$WORK/spaced" && cp "$WORK/in/A/x.jpg" "$WORK/spaced/with space.jpg"
printf '%s\n' "$WORK/spaced/with space.jpg" >"$WORK/inputs.txt"
run colorize --out "$WORK/out_list" --inputs-from "$WORK/inputs.txt"
[[ $RC == 0 && -f "$WORK/out_list/with space.png" ]] \
    && report colorize-inputs-from 0 "a name with a space, read from a list file: $(grep '^colorized' <<<"$OUT")" \
    || report colorize-inputs-from 1 "exit $RC: $(tail -c 300 <<<"$OUT")"

store="$WORK/store/transfer.jsonl"
mkdir -p "$WORK/store" && : >"$store" && unwritable "$store"
run "$PY" -m transfer.cli.probe ckpt="$WORK/weights/good.ckpt" runs_dir="$WORK/probe" run=ro results="$store" layer=conv1 \
    data.source=synthetic data.crop_size=32 data.synthetic_size=48 data.synthetic_train_images=16 \
    data.synthetic_val_images=8 data.batch_size=8 data.num_workers=0 trainer.accelerator=cpu schedule.unit=epoch \
    schedule.length=1 trainer.progress_bar=false logger.kind=none
warning="$(grep -i "warning.*$store" <<<"$OUT" | head -1)"
[[ $RC == 0 && -s "$WORK/probe/probe-ro/results.json" && -n "$warning" && "$OUT" == *"top-1"* ]] \
    && report probe-store-unwritable 0 "accuracy printed, results.json written; $(cut -c1-200 <<<"$warning")" \
    || report probe-store-unwritable 1 "exit $RC, results.json: $(ls "$WORK/probe/probe-ro" 2>&1 | tr '\n' ' '): $(tail -c 300 <<<"$OUT")"

need voc
run voc_cls data.root="$WORK/voc_bad/clean" data.num_workers=0 run=ro results="$store"
warning="$(grep -i "warning.*$store" <<<"$OUT" | head -1)"
[[ $RC == 0 && -s "$WORK/voc_runs/voc-cls-ro/results.json" && -n "$warning" && "$OUT" == *"mAP"* ]] \
    && report voc-cls-store-unwritable 0 "mAP printed, results.json written; $(cut -c1-200 <<<"$warning")" \
    || report voc-cls-store-unwritable 1 "exit $RC, run folder: $(ls "$WORK/voc_runs/voc-cls-ro" 2>&1 | tr '\n' ' '): $(tail -c 300 <<<"$OUT")"
fi

# ------------------------------------------------------------------ results that would be silently wrong [silent]
if want silent; then
need gray
prior="$WORK/gray/prior.npy"
run pretrain $(tiny "$WORK" gray) data.source=folder data.root="$WORK/gray" targets.prior_path="$prior"
expect_one_line_error gray-training-set "no colour"
need weights
need photo
run "$PY" -m lit_colorization.cli.colorize --weights-format official --ckpt "$WORK/weights/official_nan.pth" \
    --out "$WORK/out_official_nan" "$WORK/red.png"
expect_one_line_error official-nan-weights "$WORK/weights/official_nan.pth" "not finite"
run "$PY" -m lit_colorization.cli.colorize --ckpt "$WORK/weights/nan.ckpt" --out "$WORK/out_checkpoint_nan" "$WORK/red.png"
expect_one_line_error checkpoint-nan-weights "$WORK/weights/nan.ckpt" "not finite"
run pretrain $(tiny "$WORK" few) data.synthetic_train_images=3
expect_one_line_error fewer-images-than-batch "3 training images" "data.batch_size=4"
run pretrain $(tiny "$WORK" few_prior) data.synthetic_train_images=3 targets.prior_path="$prior"
expect_one_line_error fewer-images-than-batch-with-prior "3 training images" "data.batch_size=4"
fi

# ------------------------------------------------------------------ bad inputs: one line, not a traceback [inputs]
if want inputs; then
need links
for kind in loop cycle; do
    run pretrain $(tiny "$WORK" "link_$kind") data.source=folder data.root="$WORK/links/$kind"
    expect_one_line_error "data-symlink-$kind" "$WORK/links/$kind/train/photos/self_link"
done
need voc
need weights
need photo
voc07="$WORK/voc_bad/malformed/VOCdevkit/VOC2007"
malformed="$voc07/Annotations/$(head -1 "$voc07/ImageSets/Main/test.txt").xml"  # a test image's: every run reads it
run voc_cls data.root="$WORK/voc_bad/malformed" data.num_workers=2
expect_one_line_error voc-cls-malformed-annotation "$malformed"
run voc_det data.root="$WORK/voc_bad/malformed" data.num_workers=2
expect_one_line_error voc-det-malformed-annotation "$malformed"
for kind in no_model_name entry_list; do
    run "$PY" -m lit_colorization.cli.colorize --ckpt "$WORK/weights/$kind.ckpt" --out "$WORK/out_bad" "$WORK/red.png"
    expect_one_line_error "checkpoint-${kind//_/-}" "$WORK/weights/$kind.ckpt" "lit_colorization"
done
run "$PY" -m lit_colorization.cli.colorize --weights-format official --ckpt "$WORK/weights/official_non_tensor.pth" \
    --out "$WORK/out_bad" "$WORK/red.png"
expect_one_line_error official-non-tensor-value "$WORK/weights/official_non_tensor.pth" "model1.0.weight"
: >"$WORK/a_file"
run "$PY" -m lit_colorization.cli.colorize --ckpt "$WORK/weights/good.ckpt" --out "$WORK/a_file" "$WORK/red.png"
expect_one_line_error colorize-out-is-a-file "--out" "$WORK/a_file"
run "$PY" -m lit_colorization.cli.colorize --ckpt "$WORK/weights/good.ckpt" --out "$WORK/out_bad" --size -8 "$WORK/red.png"
expect_one_line_error colorize-negative-size "--size" "-8"
study="$("$PY" -c "
from pathlib import Path; from tests.study.test_study_app import make_study; from lit_colorization.study.app import create_app
client = create_app(make_study(Path('$WORK/study')), Path('$WORK/study.sqlite'), trials=2).test_client()
client.post('/start')
print(client.get('/image/0/left').status_code, client.get('/image/99999999999999999999999/left').status_code,
      client.post('/answer', data={'trial': '0', 'chosen_side': 'left', 'response_ms': '5' * 4_000_000}).status_code)
" 2>&1 | tail -1)"
read -r first huge big <<<"$study"
[[ "$first" == 200 && "$huge" == 404 ]] \
    && report study-huge-image-index 0 "/image/<20 digits>/left: HTTP $huge" \
    || report study-huge-image-index 1 "HTTP $first for trial 0, $huge for a 20-digit index: $study"
[[ "$big" == 413 ]] \
    && report study-request-size-cap 0 "a 4 MB answer form: HTTP $big" \
    || report study-request-size-cap 1 "a 4 MB answer form: HTTP $big ($study)"
fi

# ------------------------------------------------------------------ warnings that name what is odd [warnings]
if want warnings; then
run pretrain $(tiny "$WORK" two_devices) trainer.accelerator=auto trainer.devices=2 trainer.max_steps=1 \
    trainer.validate_before_training=false logger.kind=none
warned="$(grep -c "trainer.devices=2" <<<"$OUT")"
[[ $RC == 0 && $warned == 1 ]] \
    && report devices-without-gpus 0 "$(grep "trainer.devices=2" <<<"$OUT" | cut -c1-200)" \
    || report devices-without-gpus 1 "exit $RC, $warned lines name trainer.devices=2: $(tail -c 300 <<<"$OUT")"
need voc
need weights
run voc_det data.root="$WORK/voc_bad/outside" data.num_workers=0 run=outside
voc07="$WORK/voc_bad/outside/VOCdevkit/VOC2007"
xml="$voc07/Annotations/$(head -1 "$voc07/ImageSets/Main/test.txt").xml"
warning="$(grep -i "warning.*$xml" <<<"$OUT" | head -1)"
[[ $RC == 0 && -n "$warning" ]] \
    && report voc-boxes-outside-image 0 "$(cut -c1-240 <<<"$warning")" \
    || report voc-boxes-outside-image 1 "exit $RC, no warning naming $xml: $(tail -c 300 <<<"$OUT")"
fi

# ------------------------------------------------------------------ shard folders are data, not code [shards]
if want shards; then
need shards
shard_run() { pretrain $(tiny "$WORK" "$1") data.source=shards data.root="$WORK/shards/$2" "${@:3}"; }
rm -f "$WORK/shards/pickle_ran"
run shard_run sh_pickled pickled
expect_one_line_error shard-index-names-pickle "$WORK/shards/pickled/train/index.json" "data_format" "pickle"
[[ ! -e "$WORK/shards/pickle_ran" ]] \
    && report shard-pickle-never-runs 0 "the payload's marker file was not created" \
    || report shard-pickle-never-runs 1 "the pickled payload ran: $WORK/shards/pickle_ran exists"
run shard_run sh_foreign foreign_type
expect_one_line_error shard-foreign-field-type "$WORK/shards/foreign_type/train/index.json" "data_format"
run shard_run sh_not_json not_json
expect_one_line_error shard-index-not-json "$WORK/shards/not_json/train/index.json" "not a readable JSON"
run shard_run sh_empty empty_index
expect_one_line_error shard-index-empty "$WORK/shards/empty_index/train/index.json"
run shard_run sh_outside outside_chunk
expect_one_line_error shard-chunk-outside-folder "$WORK/shards/outside_chunk/train/index.json" "chunk file name"
run shard_run sh_truncated truncated_chunk data.num_workers=0
expect_one_line_error shard-truncated-chunk "$WORK/shards/truncated_chunk/train" "unreadable shard sample"
for size in 0 -5 64XB; do
    run "$PY" -m lit_colorization.cli.shards --data "$WORK/shards/images" --out "$WORK/shards_out_$size" --chunk-bytes "$size"
    expect_one_line_error "shards-chunk-bytes-$size" "--chunk-bytes" "'$size'"
done
mkdir -p "$WORK/shards_used/val" && : >"$WORK/shards_used/val/old"
run "$PY" -m lit_colorization.cli.shards --data "$WORK/shards/images" --out "$WORK/shards_used" --workers 1
expect_one_line_error shards-val-checked-first "$WORK/shards_used/val already holds files"
[[ ! -e "$WORK/shards_used/train" ]] && report shards-nothing-written 0 "OUT/train was not written" \
    || report shards-nothing-written 1 "OUT/train was written before OUT/val was refused"
run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_PROFILE AWS_EC2_METADATA_DISABLED=true \
    AWS_SHARED_CREDENTIALS_FILE="$WORK/none" AWS_CONFIG_FILE="$WORK/none" \
    "$PY" -m lit_colorization.cli.shards --data "$WORK/shards/images" --out s3://no-such-bucket/shards
expect_one_line_error shards-s3-without-credentials "s3://no-such-bucket/shards/train" "no AWS credentials"
run shard_run sh_online good data.batch_size=2 data.num_workers=0 trainer.checkpoint_every_n_steps=1 logger.kind=none
[[ $RC == 0 && -s "$WORK/sh_online/online_eval.json" ]] && ! grep -q "0 class" <<<"$OUT" \
    && report shards-online-eval 0 "online evaluation ran on shards (classes from the shards' index): online_eval.json written" \
    || report shards-online-eval 1 "exit $RC, online_eval.json: $(ls "$WORK/sh_online" 2>&1 | tr '\n' ' '): $(grep -m1 'class' <<<"$OUT")"
[[ $RC == 0 ]] && ! grep -q "weights_only" <<<"$OUT" \
    && report checkpoint-save-says-weights-only 0 "no 'weights_only was not set' line at the checkpoint saves" \
    || report checkpoint-save-says-weights-only 1 "$(grep -m1 weights_only <<<"$OUT")"
fi

# ------------------------------------------------------------------ a failing worker ends the run [hangs]
if want hangs; then
need shards
for source in shards folder; do
    root="$WORK/shards/images_bad"
    if [[ ! -e "$root" ]]; then
        cp -r "$WORK/shards/images" "$root" && printf 'not a jpeg' >"$root/train/class0/00.jpg"
        "$PY" -m lit_colorization.cli.shards --data "$root" --out "$WORK/shards/bad" --workers 1 --index-cache null >/dev/null 2>&1
    fi
    [[ $source == shards ]] && where="$WORK/shards/bad" || where="$root"
    run timeout 300 "$PY" -m lit_colorization.cli.pretrain $(tiny "$WORK" "hang_$source") data.source=$source \
        data.root="$where" data.strict=true data.num_workers=2 data.batch_size=2 data.index_cache=null
    survivors=($(pgrep -f "run=hang_$source"))  # this case's own processes: its run name is in their command line
    left=${#survivors[@]}
    for survivor in "${survivors[@]}"; do kill -KILL "$survivor" 2>/dev/null; done
    if [[ $RC == 124 ]]; then report "worker-error-ends-run-$source" 1 "still running after 300 s: $(tail -c 200 <<<"$OUT")"
    elif [[ $left != 0 ]]; then report "worker-error-ends-run-$source" 1 "$left processes outlived the run"
    else expect_one_line_error "worker-error-ends-run-$source" "unreadable image" "00.jpg"; fi
done
fi

# ------------------------------------------------------------------ run names and run folders [runpaths]
if want runpaths; then
mkdir -p "$WORK/rp/runs" && echo kept >"$WORK/rp/config.yaml"
for name in .. . "$(printf 'x%.0s' $(seq 300))"; do
    run pretrain $(tiny "$WORK/rp/runs" "$name")
    expect_one_line_error "run-name-${#name}-chars${name//[^.]/}" "config key 'run'" "one folder name"
done
[[ "$(cat "$WORK/rp/config.yaml")" == kept && -z "$(ls "$WORK/rp/runs")" ]] \
    && report run-name-nothing-written 0 "the parent's config.yaml is intact and runs/ is empty" \
    || report run-name-nothing-written 1 "config.yaml: $(cat "$WORK/rp/config.yaml"); runs/: $(ls "$WORK/rp/runs")"
mkdir -p "$WORK/rp/readonly" && unwritable "$WORK/rp/readonly"
run pretrain $(tiny "$WORK/rp/readonly" r)
expect_one_line_error runs-dir-read-only "$WORK/rp/readonly/r: cannot write the run folder"
for pid in '"abc"' 99999999999999999999999; do
    mkdir -p "$WORK/rp/runs/locked" && echo "{\"pid\": $pid, \"host\": \"$(hostname)\"}" >"$WORK/rp/runs/locked/run.lock"
    run pretrain $(tiny "$WORK/rp/runs" locked)
    expect_one_line_error "run-lock-pid-${pid//\"/}" "$WORK/rp/runs/locked/run.lock: not a run lock"
done
fi

# ------------------------------------------------------------------ a stop signal during the prior pass [prior-signal]
if want prior-signal; then
for signal in TERM USR1; do
    log="$WORK/prior_$signal.log"
    setsid "$PY" -m lit_colorization.cli.pretrain $(tiny "$WORK" "prior_$signal") data.synthetic_train_images=4000 \
        data.num_workers=1 logger.kind=none >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do grep -q "prior: .*[1-9][0-9]*/" "$log" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.2; done
    kill -$signal -- -$pid 2>/dev/null
    wait $pid
    rc=$?
    if [[ $rc == 75 && ! -e "$WORK/prior_$signal/run.lock" ]] && grep -q "SIG$signal before training started" "$log"; then
        # The resume repeats the run's own settings: resume=auto refuses to change them.
        run pretrain $(tiny "$WORK" "prior_$signal") data.synthetic_train_images=4000 data.num_workers=1 \
            logger.kind=none resume=auto
        [[ $RC == 0 && -f "$WORK/prior_$signal/checkpoints/last.ckpt" ]] \
            && report "sig${signal,,}-during-prior-pass" 0 "exit 75, no run.lock left; resume=auto then trained the run" \
            || report "sig${signal,,}-during-prior-pass" 1 "resume=auto: exit $RC: $(tail -c 300 <<<"$OUT")"
    else
        report "sig${signal,,}-during-prior-pass" 1 "exit $rc, run.lock: $(ls "$WORK/prior_$signal" 2>&1 | tr '\n' ' '): $(tail -c 200 "$log")"
    fi
done
fi

# ------------------------------------------------------------------ VOC, results and file index surfaces [surfaces]
if want surfaces; then
need voc
need weights
voc07="$WORK/voc_bad/truncated_image/VOCdevkit/VOC2007"
image="$voc07/JPEGImages/$(head -1 "$voc07/ImageSets/Main/test.txt").jpg"
run voc_cls data.root="$WORK/voc_bad/truncated_image" data.num_workers=2 run=truncated
expect_one_line_error voc-cls-truncated-jpeg "$image: unreadable image"
run voc_cls data.root="$WORK/voc_bad/no_dog" data.num_workers=0 run=low low_shot=true "svm.low_shot_k=[1]" svm.low_shot_samples=1
expect_one_line_error voc-low-shot-class-without-positives "class 'dog'"
results="$WORK/range/transfer.jsonl"
mkdir -p "$WORK/range"
row='{"task": "linear-probe", "schema": 2, "model": "alexnet", "pretrain_run": "a", "val_images": 50'
printf '%s, "layer": "conv1", "top1": 20}\n%s, "layer": "conv2", "top1": 150}\n' "$row" "$row" >"$results"
for command in compare dashboard; do
    run "$PY" -m transfer.cli.$command --results "$results"
    [[ $RC == 0 && "$OUT" == *conv1* ]] && grep -q "$results:2: 'top1' is 150" <<<"$OUT" \
        && report "$command-out-of-range-row" 0 "the report printed; $(grep -m1 "$results:2" <<<"$OUT" | cut -c1-160)" \
        || report "$command-out-of-range-row" 1 "exit $RC: $(tail -c 300 <<<"$OUT")"
done
need shards
run pretrain $(tiny "$WORK" index) data.source=folder data.root="$WORK/shards/images" data.index_cache="$WORK/index" \
    trainer.max_steps=1 data.batch_size=2 logger.kind=none
"$PY" -c "
import glob, numpy as np
for path in glob.glob('$WORK/index/images-train-*.npz'):
    arrays = dict(np.load(path))
    arrays['mtimes'] = arrays['mtimes'][:0]
    np.savez(path[:-4], **arrays)"
run pretrain $(tiny "$WORK" index2) data.source=folder data.root="$WORK/shards/images" data.index_cache="$WORK/index" \
    trainer.max_steps=1 data.batch_size=2 logger.kind=none
line="$(grep -m1 "inconsistent" <<<"$OUT")"
[[ $RC == 0 && "$line" == *"$WORK/index/images-train-"* ]] \
    && report file-index-arrays-disagree 0 "listed again: $(cut -c1-200 <<<"$line")" \
    || report file-index-arrays-disagree 1 "exit $RC: $(tail -c 300 <<<"$OUT")"
fi

# ------------------------------------------------------------------ colorize in bounded memory [memory]
if want memory; then
need weights
need photo
"$PY" benchmarks/big_photo.py 4000 "$WORK/big4000.jpg"
peak() { /usr/bin/time -f "%M" "$PY" -m lit_colorization.cli.colorize --ckpt "$WORK/weights/good.ckpt" --out "$WORK/$1" "$2" 2>&1 >/dev/null | tail -1; }
small="$(peak mem_small "$WORK/red.png")"
big="$(peak mem_big "$WORK/big4000.jpg")"
grown=$(( (big - small) / 1024 ))
[[ -f "$WORK/mem_big/big4000.png" && $grown -lt 640 ]] \
    && report colorize-4000x4000-memory 0 "peak ${big} kB, ${grown} MB above a 16x16 photo's (at once in float: about 2500 MB)" \
    || report colorize-4000x4000-memory 1 "peak ${big} kB, ${grown} MB above a 16x16 photo's"
fi

echo "fault drill: $PASSED_CASES passed, $FAILED_CASES failed (${ONLY:-all sections})"
exit $FAILED
