"""Membership inference on MNIST: does training on a distilled set leak less than on real data?

Run by hand (never in CI). The papers' table in kind: members are MNIST training rows, non-members
MNIST test rows (as in the papers) or, with ``--nonmembers train``, held-out training rows (no
train/test shift for an attacker to exploit), and a ConvNet is trained from scratch

* on all members ("real: all members"),
* on a uniformly random subset of the members of the synthetic-set size ("real: random subset"),
* on each distiller's synthetic set distilled from the members (coresets; FRePo when
  ``sklearn_distill.FRePoDistiller`` exists and ``--frepo-steps`` > 0),

then attacked with every attack of :class:`sklearn_distill.MembershipInferenceEvaluator`. The
paper's scale is ``--n-members 10000 --ipc 50``; a CPU run uses a reduced scale, e.g.::

    python benchmarks/bench_privacy.py --n-members 2000 --ipc 10 --width 16 --real-steps 1000 \
        --data-home /path/to/data

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
from _common import machine_info, machine_summary  # noqa: E402

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
    p.add_argument("--frepo-steps", type=int, default=0, help="FRePo meta-steps; 0 skips FRePo")
    p.add_argument("--nonmembers", default="test", choices=["test", "train"],
                   help="draw non-members from MNIST's test rows (the papers) or held-out training rows")
    p.add_argument("--n-splits", type=int, default=5)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.n_nonmembers = args.n_nonmembers or args.n_members

    import sklearn_distill as sd
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
    distillers = {"random (class-balanced)": RandomDistiller(ipc=args.ipc, random_state=args.seed),
                  "herding": HerdingDistiller(ipc=args.ipc),
                  "k-center": KCenterDistiller(ipc=args.ipc)}
    if hasattr(sd, "FRePoDistiller") and args.frepo_steps > 0:
        distillers["FRePo"] = sd.FRePoDistiller(
            ipc=args.ipc, n_steps=args.frepo_steps, batch_size=min(1024, args.n_members),
            model=ConvNet(width=args.width, depth=args.depth, norm="batch", width_doubling=True),
            random_state=args.seed)
    for name, d in distillers.items():
        start = time.perf_counter()
        d.fit(X_mem, y_mem)
        sets[name] = (d.synthetic_X_, d.synthetic_y_, getattr(d, "synthetic_y_soft_", None),
                      time.perf_counter() - start)
        print(f"{name}: distilled {len(d.synthetic_y_)} images in {sets[name][3]:.1f}s", flush=True)

    mia = MembershipInferenceEvaluator(n_splits=args.n_splits, n_jobs=args.n_jobs, random_state=args.seed)
    rows = []
    for name, (X_s, y_s, soft, distill_s) in sets.items():
        start = time.perf_counter()
        clf = classifier(args.real_steps if name == "real: all members" else args.small_steps)
        clf.fit(X_s, y_s, soft_labels=soft)
        train_s = time.perf_counter() - start
        acc = float(np.mean(clf.predict(X_test) == y_test))
        start = time.perf_counter()
        res = mia.evaluate(clf, X_mem, y_mem, X_non, y_non)
        attack_s = time.perf_counter() - start
        row = {"model": name, "n_train": int(len(y_s)), "test_acc": 100 * acc,
               "member_acc": 100 * res.member_accuracy, "nonmember_acc": 100 * res.nonmember_accuracy,
               "auc": res.table["auc"].round(4).to_dict(),
               "advantage": res.table["advantage"].round(4).to_dict(),
               "tpr_at_1%_fpr": res.table["tpr_at_1%_fpr"].round(4).to_dict(),
               "tpr_at_0.1%_fpr": res.table["tpr_at_0.1%_fpr"].round(4).to_dict(),
               "distill_seconds": round(distill_s, 1), "train_seconds": round(train_s, 1),
               "attack_seconds": round(attack_s, 1), "paper": PAPER.get(name)}
        print(json.dumps(row), flush=True)
        rows.append(row)

    config = dict(vars(args), model=repr(net).replace("\n", " "), test_rows=int(len(y_test)),
                  preprocessing="x/255, per-channel standardisation fitted on members")
    out = {"benchmark": "membership inference (MNIST)", "config": config, "machine": machine_info(),
           "results": rows}
    attacks = list(rows[0]["auc"])
    m = out["machine"]
    lines = [f"Membership inference on MNIST: {args.n_members} members (train rows), {args.n_nonmembers} "
             f"non-members ({args.nonmembers} rows), {n_syn} synthetic images (ipc {args.ipc}). "
             f"ConvNet width "
             f"{args.width}, depth {args.depth}, no norm, Adam {args.lr:g}, batch {args.batch}, augment "
             f"{args.augment}; {args.real_steps} steps on all members, {args.small_steps} on small sets. "
             f"Attacks: balanced sets, {args.n_splits}-fold out-of-fold scoring. Machine: "
             f"{machine_summary(m)}.", "",
             "| training set | n | test acc (%) | member / non-member acc (%) | "
             + " | ".join(f"AUC {a}" for a in attacks) + " | max advantage | paper |",
             "|---|---|---|---|" + "---|" * len(attacks) + "---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['n_train']} | {r['test_acc']:.1f} | "
                     f"{r['member_acc']:.1f} / {r['nonmember_acc']:.1f} | "
                     + " | ".join(f"{r['auc'][a]:.3f}" for a in attacks)
                     + f" | {max(r['advantage'].values()):.3f} | {r['paper'] or ''} |")
    os.makedirs(RESULTS, exist_ok=True)
    name = (f"privacy_mnist_m{args.n_members}_ipc{args.ipc}_w{args.width}_s{args.real_steps}"
            f"_non{args.nonmembers}")
    with open(os.path.join(RESULTS, name + ".json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    with open(os.path.join(RESULTS, name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
