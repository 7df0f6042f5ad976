#!/usr/bin/python3
"""The simulated training step's tables (benchmarks/bench_sim_step.sh):

  step_table.py RAW.csv RUNS.csv OUT.csv [sim/models/*.tsv] > TABLE.md

One table per (model, scaling mode): scaling efficiency (simulated step time in parentheses, ms)
per allreduce and simulated rank count; then each smpirun's wall time and peak RSS. OUT.csv is
RAW.csv sorted, the data of the tables."""
import csv, os, sys

raw, runs, out = sys.argv[1:4]
tables = sys.argv[4:]
rows = list(csv.DictReader(open(raw)))
# a point simulated twice (a rerun) is deterministic: keep one
rows = list({(r["p"], r["model"], r["mode"], r["algo"], r["bucket_mb"]): r for r in rows}.values())
key = lambda r: (r["model"], r["mode"], r["algo"], int(r["p"]))
rows.sort(key=key)
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["p"])
    w.writeheader()
    w.writerows(rows)

cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
run_rows = list(csv.DictReader(open(runs)))
loads = [float(r["load"]) for r in run_rows if r.get("load")]
print(f"CPU: {cpu}, {os.cpu_count()} cores; load average during the runs "
      f"{min(loads) if loads else 0:.1f}-{max(loads) if loads else 0:.1f} (shared machine: affects "
      "the wall times only, the simulated times are deterministic)\n")
if tables:
    print("One rank's step (sim/models/*.tsv, 1 thread, CPU time; every part scaled so that forward + "
          "backward + update = the ./paratrain step):\n")
    print("| model | parameters | batch | ./paratrain step (ms) | scale | forward | backward | "
          "update | top-k 0.1% work | sign work | backward ranges |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in tables:
        kv, nready = {}, 0
        for line in open(path):
            f = line.split()
            if not f or f[0].startswith("#"):
                continue
            if f[0] == "ready":
                nready += 1
            elif len(f) == 2:
                kv[f[0]] = f[1]
        g = lambda k: float(kv.get(k, 0))
        tot = g("forward_s") + g("backward_s") + g("update_s")
        sc = g("paratrain_step_s") / tot if g("paratrain_step_s") > 0 else 1.0
        ms = lambda k: f"{g(k) * sc * 1e3:.2f}"
        step = (f"{g('paratrain_step_s') * 1e3:.2f} | {sc:.3f}" if g("paratrain_step_s") > 0
                else f"- (profile {tot * 1e3:.2f}) | 1")
        print(f"| {kv.get('model')} | {int(g('numel'))} | {int(g('batch'))} | {step} | "
              f"{ms('forward_s')} | {ms('backward_s')} | {ms('update_s')} | {ms('topk_s')} | "
              f"{ms('sign_s')} | {nready} |")
    print()
ps = sorted({int(r["p"]) for r in rows})
order = ["ring", "rabenseifner", "recursive_doubling", "hierarchical", "mpi", "fp16", "topk", "sign"]
for model in sorted({r["model"] for r in rows}):
    for mode in ("weak", "strong"):
        sel = [r for r in rows if r["model"] == model and r["mode"] == mode]
        if not sel:
            continue
        b = {int(r["p"]): r["batch_per_rank"] for r in sel}
        comp = {int(r["p"]): float(r["compute_s"]) for r in sel}
        print(f"**{model}, {mode} scaling** (batch per rank: "
              + ", ".join(f"{b[p]} at {p}" for p in ps if p in b)
              + "; compute per rank: "
              + ", ".join(f"{comp[p] * 1e3:.1f} ms" for p in ps if p in comp) + ")\n")
        print("| allreduce | " + " | ".join(f"p = {p}" for p in ps) + " |")
        print("|---|" + "---|" * len(ps))
        algos = sorted({r["algo"] for r in sel}, key=lambda a: order.index(a) if a in order else 99)
        for a in algos:
            cells = []
            for p in ps:
                m = [r for r in sel if r["algo"] == a and int(r["p"]) == p]
                cells.append(f"{float(m[0]['efficiency']):.2f} ({float(m[0]['step_s']) * 1e3:.1f})"
                             if m else "-")
            print(f"| {a} | " + " | ".join(cells) + " |")
        print()
print("Wall time and peak memory of each smpirun (/usr/bin/time -v; RSS overcounts the "
      "shared-malloc pages, and of a run that timed out (exit 124) or was stopped at the deadline (143) it is the wrapper's; such "
      "a run's finished steps are in the tables):\n")
print("| p | model | allreduces | wall (s) | peak RSS (MB) | exit |")
print("|---|---|---|---|---|---|")
for r in run_rows:
    rss = int(r["maxrss_kb"]) / 1024 if r["maxrss_kb"] else 0
    print(f"| {r['p']} | {r['model']} | {r['algos'].replace(',', ', ')} | {r['wall_s']} | "
          f"{rss:.0f} | {r['rc']} |")
