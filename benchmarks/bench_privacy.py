"""Membership inference on MNIST: does training on a distilled set leak less than on real data?

Run by hand (never in CI). The papers' table in kind: members are MNIST training rows, non-members
MNIST test rows (as in the papers) or, with ``--nonmembers train``, held-out training rows (no
train/test shift for an attacker to exploit), and a ConvNet is trained from scratch

* on all members ("real: all members"),
* on a uniformly random subset of the members of the synthetic-set size ("real: random subset"),
* on each distiller's synthetic set distilled from the members (``--methods``: the coresets
  random, herding, k-center and the learned distillers FRePo, RCIG, RaT-BPTT, KRR; by default the
  three coresets, plus FRePo when ``--frepo-steps`` > 0),

then attacked with every attack of :class:`sklearn_distill.MembershipInferenceEvaluator`. The
paper's scale is ``--n-members 10000 --ipc 50``; a CPU run uses a reduced scale, e.g.::

    python benchmarks/bench_privacy.py --n-members 2000 --ipc 10 --width 16 --real-steps 1000 \
        --data-home /path/to/data

With ``--seconds S`` every learned distiller gets the same wall-clock budget (the time of a
meta-step is measured first and the step count set from it), e.g.::

    python benchmarks/bench_privacy.py --n-members 2000 --ipc 10 --width 16 --real-steps 800 \
        --small-steps 300 --methods random herding kcenter frepo rcig ratbptt krr --seconds 120 \
        --name privacy_learned_mnist_m2000_ipc10_w16 --data-home data

Writes ``benchmarks/results/privacy_mnist_*.json`` and ``.md``. Benchmark files are made with
``python materialize.py DATA_HOME`` (shared datasets folder).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)
from _common import (LEARNED, METHOD_LABELS, add_learned_arguments, build_learned,  # noqa: E402
                     learned_settings, machine_info, machine_summary)

# The papers' figures (shared reference table): MNIST, 10,000 members / non-members, 500 images.
PAPER = {"real: all members": "acc 99.2, AUC 0.97-1.00", "FRePo": "acc 98.5, AUC 0.51-0.53",
         "real: random subset": "acc 96.8, AUC 0.50-0.55"}


def load(args):
    from sklearn_distill import ImageStandardizer, load_benchmark

    X_tr, y_tr, X_te, y_te = load_benchmark("mnist", args.data_home, return_X_y=True)
    rng = np.random.default_rng(args.seed)
    if args.nonmembers == "train":
        # Members and non-members from the same pool (MNIST's training rows): the MNIST test set
        # is written by other people and is slightly easier, a shift that an attacker could pick
        # up (or be misled by) without any membership signal.
        perm = rng.permutation(len(X_tr))
        mem, non = perm[:args.n_members], perm[args.n_members:args.n_members + args.n_nonmembers]
        X_non, y_non = X_tr[non], y_tr[non]
        test = np.arange(len(X_te))
    else:
        mem = rng.choice(len(X_tr), args.n_members, replace=False)
        perm = rng.permutation(len(X_te))
        non, test = perm[:args.n_nonmembers], perm[args.n_nonmembers:]
        if len(test) == 0:
            # All 10,000 test rows are non-members (the papers' setting): they are still unseen by
            # every model, so test accuracy is measured on them.
            test = non
        X_non, y_non = X_te[non], y_te[non]
    X_mem, X_non, X_test = (X.astype(np.float32) / 255.0 for X in (X_tr[mem], X_non, X_te[test]))
    # Standardise with statistics of the members only: the model's whole training data.
    scaler = ImageStandardizer().fit(X_mem)
    return (scaler.transform(X_mem), y_tr[mem], scaler.transform(X_non), y_non,
            scaler.transform(X_test), y_te[test])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-home", default=os.path.join(HERE, "..", "data"))
    p.add_argument("--n-members", type=int, default=10000)
    p.add_argument("--n-nonmembers", type=int, default=None, help="default: --n-members")
    p.add_argument("--ipc", type=int, default=50, help="synthetic images per class")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--real-steps", type=int, default=3000, help="training steps on all members")
    p.add_argument("--small-steps", type=int, default=1000, help="training steps on small sets")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of every model")
    p.add_argument("--augment", default="none", choices=["none", "auto"])
    p.add_argument("--methods", nargs="+", default=None,
                   choices=["random", "herding", "kcenter", "frepo", "rcig", "ratbptt", "krr"],
                   help="distillers; default: random herding kcenter (and frepo when --frepo-steps > 0)")
    p.add_argument("--frepo-steps", type=int, default=0,
                   help="FRePo meta-steps (without --seconds); with the default --methods, 0 skips FRePo")
    add_learned_arguments(p, frepo_steps_flag=False)
    p.add_argument("--nonmembers", default="test", choices=["test", "train"],
                   help="draw non-members from MNIST's test rows (the papers) or held-out training rows")
    p.add_argument("--n-splits", type=int, default=5)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None,
                   help="output name (default: privacy_mnist_mM_ipcI_wW_sS_nonNON)")
    p.add_argument("--no-real", action="store_true",
                   help="leave out the two real-data rows (all members, random subset)")
    p.add_argument("--out", default=RESULTS, help="output folder")
    p.add_argument("--note", default="", help="a sentence added to the markdown (e.g. dropped methods)")
    args = p.parse_args(argv)
    args.n_nonmembers = args.n_nonmembers or args.n_members
    if args.methods is None:
        args.methods = ["random", "herding", "kcenter"] + (["frepo"] if args.frepo_steps > 0 else [])

    from sklearn_distill import (ConvNet, HerdingDistiller, KCenterDistiller, MembershipInferenceEvaluator,
                                 NeuralNetClassifier, RandomDistiller)

    X_mem, y_mem, X_non, y_non, X_test, y_test = load(args)
    net = ConvNet(width=args.width, depth=args.depth, norm="none")

    def classifier(steps):
        return NeuralNetClassifier(net, n_steps=steps, learning_rate=args.lr, batch_size=args.batch,
                                   augment=args.augment, random_state=args.seed)

    # name -> (training rows, labels, learned labels or None, distil seconds)
    n_syn = args.ipc * len(np.unique(y_mem))
    rng = np.random.default_rng(args.seed + 1)
    sub = rng.choice(len(y_mem), n_syn, replace=False)
    sets = {"real: all members": (X_mem, y_mem, None, 0.0),
            "real: random subset": (X_mem[sub], y_mem[sub], None, 0.0)}
    if args.no_real:
        sets = {}
    coresets = {"random": lambda: RandomDistiller(ipc=args.ipc, random_state=args.seed),
                "herding": lambda: HerdingDistiller(ipc=args.ipc),
                "kcenter": lambda: KCenterDistiller(ipc=args.ipc)}
    labels = dict(METHOD_LABELS, random="random (class-balanced)")

    def distil(method):
        """The synthetic set of ``method``: (rows, labels, learned labels or None, seconds, budget)."""
        budget = {}
        if method in coresets:
            d = coresets[method]()
        else:
            d, budget = build_learned(method, args.ipc, args, X_mem, y_mem, seed=args.seed)
        start = time.perf_counter()
        d.fit(X_mem, y_mem)
        seconds = time.perf_counter() - start
        if method in LEARNED:
            budget["steps_taken"] = int(d.n_iter_)
        print(f"{labels[method]}: distilled {len(d.synthetic_y_)} images in {seconds:.1f}s", flush=True)
        return d.synthetic_X_, d.synthetic_y_, getattr(d, "synthetic_y_soft_", None), seconds, budget

    config = dict(vars(args), model=repr(net).replace("\n", " "), test_rows=int(len(y_test)),
                  preprocessing="x/255, per-channel standardisation fitted on members")
    out = {"benchmark": "membership inference (MNIST)", "config": config, "machine": machine_info(),
           "results": []}
    name = args.name or (f"privacy_mnist_m{args.n_members}_ipc{args.ipc}_w{args.width}"
                         f"_s{args.real_steps}_non{args.nonmembers}")
    mia = MembershipInferenceEvaluator(n_splits=args.n_splits, n_jobs=args.n_jobs, random_state=args.seed)
    for key in list(sets) + list(args.methods):
        if key in sets:
            label, (X_s, y_s, soft, distill_s), budget = key, sets[key], {}
        else:
            label = labels[key]
            X_s, y_s, soft, distill_s, budget = distil(key)
        start = time.perf_counter()
        clf = classifier(args.real_steps if label == "real: all members" else args.small_steps)
        clf.fit(X_s, y_s, soft_labels=soft)
        train_s = time.perf_counter() - start
        acc = float(np.mean(clf.predict(X_test) == y_test))
        start = time.perf_counter()
        res = mia.evaluate(clf, X_mem, y_mem, X_non, y_non)
        attack_s = time.perf_counter() - start
        row = {"model": label, "n_train": int(len(y_s)), "test_acc": 100 * acc,
               "member_acc": 100 * res.member_accuracy, "nonmember_acc": 100 * res.nonmember_accuracy,
               "auc": res.table["auc"].round(4).to_dict(),
               "advantage": res.table["advantage"].round(4).to_dict(),
               "tpr_at_1%_fpr": res.table["tpr_at_1%_fpr"].round(4).to_dict(),
               "tpr_at_0.1%_fpr": res.table["tpr_at_0.1%_fpr"].round(4).to_dict(),
               "soft_labels": soft is not None, "budget": budget,
               "distill_seconds": round(distill_s, 1), "train_seconds": round(train_s, 1),
               "attack_seconds": round(attack_s, 1), "paper": PAPER.get(label)}
        print(json.dumps(row), flush=True)
        out["results"].append(row)
        # Written after every row, so an interrupted run leaves what it finished (marked).
        write_report(args, name, out, n_syn, complete=False)
    write_report(args, name, out, n_syn, complete=True)


def write_report(args, name, out, n_syn, complete):
    rows = out["results"]
    attacks = list(rows[0]["auc"])
    m = out["machine"]
    learned = learned_settings(args, args.methods)
    lines = [f"Membership inference on MNIST: {args.n_members} members (train rows), {args.n_nonmembers} "
             f"non-members ({args.nonmembers} rows), {n_syn} synthetic images (ipc {args.ipc}). "
             f"ConvNet width "
             f"{args.width}, depth {args.depth}, no norm, Adam {args.lr:g}, batch {args.batch}, augment "
             f"{args.augment}; {args.real_steps} steps on all members, {args.small_steps} on small sets "
             f"(MSE on the learned labels where a method learns them, cross-entropy otherwise). "
             + (learned + " " if learned else "")
             + f"Attacks: balanced sets, {args.n_splits}-fold out-of-fold scoring. Machine: "
             f"{machine_summary(m)}.", ""]
    if args.note:
        lines += [args.note, ""]
    if args.nonmembers == "test" and args.n_nonmembers >= 10000:
        lines += ["Every MNIST test row is a non-member, so test accuracy is measured on the "
                  "non-members (rows no model has seen).", ""]
    if not complete:
        lines += ["**Partial results**: the run had not finished when this file was written.", ""]
    lines += ["| training set | n | test acc (%) | member / non-member acc (%) | "
              + " | ".join(f"AUC {a}" for a in attacks)
              + " | max advantage | meta-steps | distil time (s) | paper |",
              "|---|---|---|---|" + "---|" * len(attacks) + "---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['n_train']} | {r['test_acc']:.1f} | "
                     f"{r['member_acc']:.1f} / {r['nonmember_acc']:.1f} | "
                     + " | ".join(f"{r['auc'][a]:.3f}" for a in attacks)
                     + f" | {max(r['advantage'].values()):.3f} | "
                     f"{r.get('budget', {}).get('steps_taken', '–')} | {r['distill_seconds']} | "
                     f"{r['paper'] or ''} |")
    out["complete"] = complete
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if complete:
        print("\n".join(lines))

if __name__ == "__main__":
    main()
