/* paratrain: train and evaluate models over MPI: data parallel, and tensor x data parallel on a
 * process grid (--tp N; docs/ARCHITECTURE.md).
 *
 *   mpirun -np 2 paratrain train --data data/fashion-mnist --epochs 10 --ckpt-dir runs/mlp
 *   paratrain eval --ckpt runs/mlp
 *
 * Exit codes (one rule, by the class of the error, the same on every rank; one rank prints):
 *   0 success; 2 a usage error: a flag, a value, a model spec, a combination of options, or
 *   options that do not fit the data (every PT_ERR_ARG); 1 any other error (files, data,
 *   checkpoints, MPI, memory); 75 preempted: SIGTERM or SIGUSR1 arrived, every rank finished its
 *   step and the checkpoint was written (resume with --resume auto); 69 (PT_EXIT_PEER_LOST) a
 *   peer stopped responding: a wait for another rank made no progress for PT_COLL_TIMEOUT
 *   seconds, one line names the operation and the peer, and MPI_Abort ends every rank. */
#include "config.h"

#define _GNU_SOURCE /* sched_getaffinity, CPU_* */
#include <mpi.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paratrain/mpi_init.h"
#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/data.h"
#include "paratrain/model.h"
#include "paratrain/log.h"
#include "paratrain/train.h"
#include "paratrain/watchdog.h"

/* paratrain generate: every rank loads the model; rank 0 samples and prints. */
static int generate(int argc, char **argv, int rank)
{
    const char *ckpt = NULL, *prompt = "";
    long ntok = 200, top_k = 40, seed = 1;
    double temp = 0.8;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help")) {
            if (rank == 0)
                printf("usage: paratrain generate --ckpt CKPT [--prompt TEXT] [--tokens N]\n"
                       "                          [--temperature T] [--top-k K] [--seed N]\n"
                       "Samples bytes from a trained gpt checkpoint (file, directory or 'latest').\n"
                       "  --tokens N        bytes to generate [200]\n"
                       "  --temperature T   softmax temperature; 0 is greedy [0.8]\n"
                       "  --top-k K         sample among the K likeliest bytes; 0: all [40]\n"
                       "  --seed N          seed of the draws [1]\n");
            return 0;
        }
        static const char *const known[] = {"--ckpt", "--prompt", "--tokens", "--top-k", "--seed",
                                            "--temperature"};
        int is_known = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) is_known |= !strcmp(a, known[k]);
        if (!is_known) { /* before "needs a value": --bogus is unknown, whatever follows it */
            if (rank == 0) fprintf(stderr, "paratrain: error: unknown option '%s' (see generate --help)\n", a);
            return 2;
        }
        if (!v) {
            if (rank == 0) fprintf(stderr, "paratrain: error: %s needs a value (see generate --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--ckpt")) ckpt = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--tokens")) ntok = strtol(v, &end, 10);
        else if (!strcmp(a, "--top-k")) top_k = strtol(v, &end, 10);
        else if (!strcmp(a, "--seed")) seed = strtol(v, &end, 10);
        else if (!strcmp(a, "--temperature")) temp = strtod(v, &end);
        if (end && (*end || end == v || ntok < 1 || ntok > 1000000 || top_k < 0 || seed < 0 ||
                    !(temp >= 0.0) || !isfinite(temp))) {
            if (rank == 0) fprintf(stderr, "paratrain: error: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (!ckpt) {
        if (rank == 0) fprintf(stderr, "paratrain: error: generate needs --ckpt (see generate --help)\n");
        return 2;
    }
    char path[PT_PATH_MAX], spec[256], optname[32];
    pt_ckpt_meta meta;
    pt_model m = {0};
    unsigned char *out = NULL;
    pt_status st = pt_ckpt_resolve(ckpt, path, sizeof path);
    if (st == PT_OK) st = pt_ckpt_read_meta(path, &meta, spec, sizeof spec, optname, sizeof optname);
    pt_model_options mo = {.act = PT_ACT_RELU, .forward_only = 1}; /* sampling: forward only */
    if (st == PT_OK) st = pt_model_create(&m, spec, &mo, pt_backend_cpu(), 1);
    if (st == PT_OK) st = pt_ckpt_load(MPI_COMM_SELF, path, &m, NULL, &meta);
    if (st == PT_OK && !(out = malloc((size_t)ntok))) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory");
    if (st == PT_OK && rank == 0)
        st = pt_generate(&m, prompt, (int)ntok, (float)temp, (int)top_k, (uint64_t)seed, out);
    if (st == PT_OK && rank == 0) {
        fputs(prompt, stdout);
        fwrite(out, 1, (size_t)ntok, stdout);
        fputc('\n', stdout);
    }
    free(out);
    pt_model_destroy(&m);
    st = pt_agree(MPI_COMM_WORLD, st, NULL);
    if (st != PT_OK) {
        pt_log_error_last("paratrain");
        return st == PT_ERR_ARG ? 2 : 1; /* the exit-code rule of main */
    }
    return 0;
}

/* MPI_Comm_free is collective in the standard; no nonblocking form exists. */
static void comm_free_armed(MPI_Comm *c)
{
    pt_watchdog_arm("MPI_Comm_free", "the node communicator of the thread choice", -1);
    MPI_Comm_free(c);
    pt_watchdog_disarm();
}

/* OpenMP threads per rank. Unless OMP_NUM_THREADS is set, a rank takes the CPUs of its affinity
 * mask divided among the ranks of its node whose masks overlap it: OpenMP's default (one thread
 * per CPU of the machine) gave `mpirun -np 2 --bind-to none` four spinning threads on two cores
 * and ran the cnn recipe 4.8x slower. Whatever the choice, rank 0 warns once when the threads of
 * the ranks of a node exceed the node's CPUs (the union of their masks). Collective. The CPU
 * backend sizes OpenBLAS from OpenMP when it starts, after this. */
static void choose_threads(int quiet)
{
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0) {
        pt_log_warn("sched_getaffinity failed; threads per rank left to OpenMP's default");
        CPU_SET(0, &mine); /* still take part in the collectives below */
    }
    MPI_Comm node;
    pt_watchdog_arm("MPI_Comm_split_type", "grouping the ranks by node to choose threads", -1);
    int src_rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    pt_watchdog_disarm();
    if (src_rc != MPI_SUCCESS) {
        pt_log_warn("MPI_Comm_split_type(SHARED) failed (%s:%d); threads per rank left to "
                    "OpenMP's default", __FILE__, __LINE__);
        return;
    }
    int nsize = 1;
    MPI_Comm_size(node, &nsize);
    cpu_set_t *all = malloc(sizeof(cpu_set_t) * (size_t)nsize);
    if (!all || pt_mpi_allgather(&mine, (int)sizeof mine, MPI_BYTE, all, node,
                                 "the CPU masks of the node's ranks") != PT_OK) {
        pt_log_warn("cannot gather the node's CPU masks (%s:%d: %s); threads per rank left to "
                    "OpenMP's default", __FILE__, __LINE__, all ? pt_error_message() : "no memory");
        free(all);
        if (!pt_watchdog_peer_lost()) comm_free_armed(&node);
        return;
    }
    int sharers = 0;
    cpu_set_t node_cpus, both;
    CPU_ZERO(&node_cpus);
    for (int j = 0; j < nsize; j++) {
        CPU_AND(&both, &mine, &all[j]);
        sharers += CPU_COUNT(&both) > 0;
        CPU_OR(&node_cpus, &node_cpus, &all[j]);
    }
    free(all);
    const int cpus = CPU_COUNT(&mine), node_ncpu = CPU_COUNT(&node_cpus);
    const char *env = getenv("OMP_NUM_THREADS");
    const int from_env = env && *env;
    int threads = omp_get_max_threads();
    if (!from_env) {
        threads = sharers > 0 && cpus / sharers > 0 ? cpus / sharers : 1;
        omp_set_num_threads(threads);
    }
    /* per node: the threads of its ranks against its CPUs; the worst node is reported */
    int node_threads = threads, node_rank = 0;
    MPI_Comm_rank(node, &node_rank);
    pt_status rc = pt_mpi_allreduce(MPI_IN_PLACE, &node_threads, 1, MPI_INT, MPI_SUM, node,
                                    "the threads of the node's ranks");
    int over[3] = {rc == PT_OK && node_threads > node_ncpu ? node_threads - node_ncpu : 0,
                   node_threads, node_ncpu}; /* excess, threads, CPUs of the worst node */
    int worst = over[0];
    if (rc == PT_OK)
        rc = pt_mpi_allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD,
                              "the worst node's excess of threads");
    /* the ranks of a worst node send their figures to rank 0: the lowest such world rank */
    int wrank = 0, src = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
    int cand = over[0] == worst && worst > 0 ? wrank : 1 << 30;
    if (rc == PT_OK)
        rc = pt_mpi_allreduce(&cand, &src, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD,
                              "the rank that reports the worst node");
    if (rc == PT_OK && worst > 0 && src != 0) {
        if (wrank == src)
            rc = pt_mpi_send(over, 3, MPI_INT, 0, 0, MPI_COMM_WORLD, "the worst node's figures");
        else if (wrank == 0)
            rc = pt_mpi_recv(over, 3, MPI_INT, src, 0, MPI_COMM_WORLD, "the worst node's figures");
    }
    if (rc != PT_OK)
        pt_log_warn("an MPI call comparing threads with cores failed (%s:%d): %s", __FILE__,
                    __LINE__, pt_error_message());
    if (!pt_watchdog_peer_lost()) comm_free_armed(&node);
    if (!quiet)
        pt_log_info("threads: %d per rank (%s; %d CPU%s in this rank's mask, shared by %d rank%s "
                    "of its node)", threads, from_env ? "OMP_NUM_THREADS" : "OMP_NUM_THREADS unset",
                    cpus, cpus == 1 ? "" : "s", sharers, sharers == 1 ? "" : "s");
    if (wrank == 0 && rc == PT_OK && worst > 0)
        pt_log_warn("%d threads on a node with %d CPUs (ranks x threads per rank): threads "
                    "spinning on the same cores slow every rank down; set OMP_NUM_THREADS to the "
                    "node's CPUs divided by its ranks, or unset it to let paratrain choose",
                    over[1], over[2]);
}

static void usage(FILE *fp)
{
    fputs("usage: paratrain train [--config FILE] [--OPTION VALUE ...]\n"
          "       paratrain generate --ckpt CKPT --prompt TEXT [...] (see generate --help)\n"
          "       paratrain eval --ckpt CKPT [--data DIR] [--split test|val|train]\n"
          "       paratrain --help | --version\n"
          "\n"
          "Trains over the ranks of mpirun (any number, 1 included), arranged as a grid of\n"
          "pp x dp x tp (--tp N: Megatron tensor parallelism for mlp and gpt inside groups of N\n"
          "consecutive ranks; the global batch is split over the dp = ranks / (tp x pp) groups).\n"
          "Options can also come from a config file of 'option = value' lines; flags override\n"
          "the file.\n"
          "\n"
          "train options [default]:\n",
          fp);
    pt_train_config_help(fp);
    fputs("\nNumbers are checked against the ranges shown (allowed: ...); inf, nan and trailing\n"
          "characters (12abc) are refused before any work starts.\n"
          "\neval options: --ckpt (a checkpoint file, or a checkpoint directory for its latest),\n"
          "  --split, and --data / --eval-batch / --backend / --validate-data as above.\n"
          "\nSignals: SIGTERM or SIGUSR1 make every rank finish its step, write a checkpoint (with\n"
          "--ckpt-dir) and exit with code 75; --resume auto then continues from it.\n"
          "\nExit codes, the same on every rank: 0 success; 2 usage error (a flag, a value, a model\n"
          "spec, a combination of options, or options that do not fit the data); 1 any other\n"
          "error (files, data, checkpoints, MPI, memory); 75 preempted after its checkpoint;\n"
          "69 a peer stopped responding (see PT_COLL_TIMEOUT).\n"
          "\nEnvironment:\n"
          "  OMP_NUM_THREADS=N: threads per rank (unset: the CPUs of the rank's binding divided\n"
          "    among the ranks of its node that share them; a warning when a node's ranks x\n"
          "    threads exceed its CPUs). Use mpirun --bind-to none when a rank has several threads.\n"
          "  PT_ALLREDUCE=ALGO: overrides --allreduce.\n"
          "  PT_COLL_TIMEOUT=SECONDS: no progress in a wait for a peer that long ends the run, exit code 69 (default 600; 0: off)\n"
          "    Covers every collective, barrier, point-to-point message, shared-memory window,\n"
          "    collective file operation and MPI_Finalize; one line names the operation and the\n"
          "    peer. Keep it above the longest a rank computes alone (a step, an evaluation).\n"
          "  PT_SHARD_VERIFY=0: do not check the data shards' per-sample checksums (exists to\n"
          "    measure what the check costs; damaged data then trains silently).\n",
          fp);
}

/* Collects --key value / --key=value pairs. The config file is applied first, then flags. */
static pt_status parse_args(int argc, char **argv, pt_train_config *c, char *ckpt, char *split,
                            int allow_eval_flags, int *help)
{
    const char *config = NULL;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return PT_ERR(PT_ERR_ARG, NULL, "--config needs a file");
            config = argv[i + 1];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config = argv[i] + 9;
        }
    if (config) PT_TRY(pt_train_config_load(c, config));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = 1;
            return PT_OK;
        }
        if (strncmp(a, "--", 2) != 0)
            return PT_ERR(PT_ERR_ARG, "options are written --name value; see --help",
                          "unexpected argument '%s'", a);
        char key[64];
        const char *val, *eq = strchr(a, '=');
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - a - 2), a + 2);
            val = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a + 2);
            if (pt_train_config_is_bool(key) &&
                (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
                val = "true"; /* a bare boolean flag: --reproducible */
            } else {
                if (i + 1 >= argc) return PT_ERR(PT_ERR_ARG, NULL, "--%s needs a value", key);
                val = argv[++i];
            }
        }
        if (!strcmp(key, "config")) continue;
        if (allow_eval_flags && !strcmp(key, "ckpt")) {
            snprintf(ckpt, PT_PATH_MAX, "%s", val);
            continue;
        }
        if (allow_eval_flags && strcmp(key, "data") && strcmp(key, "eval-batch") &&
            strcmp(key, "backend") && strcmp(key, "validate-data") && strcmp(key, "split") &&
            strcmp(key, "quiet"))
            return PT_ERR(PT_ERR_ARG, "eval rebuilds the run from the checkpoint's configuration",
                          "eval takes --ckpt, --split, --data, --eval-batch, --backend, "
                          "--validate-data and --quiet, not --%s", key);
        if (allow_eval_flags && !strcmp(key, "split")) {
            if (strcmp(val, "test") && strcmp(val, "val") && strcmp(val, "train"))
                return PT_ERR(PT_ERR_ARG, NULL, "--split must be test, val or train");
            snprintf(split, 16, "%s", val);
            continue;
        }
        PT_TRY(pt_train_config_set(c, key, val));
    }
    const char *env = getenv("PT_ALLREDUCE");
    if (env && *env) PT_TRY(pt_train_config_set(c, "allreduce", env));
    return PT_OK;
}

int main(int argc, char **argv)
{
    int rank = 0, size = 1;
    if (pt_mpi_init(&argc, &argv, MPI_THREAD_FUNNELED, &rank, &size) != PT_OK) {
        pt_log_error_last("paratrain");
        int init = 0;
        MPI_Initialized(&init);
        if (init) MPI_Finalize();
        return 1;
    }
    /* a peer that stops responding ends every rank with one documented code (watchdog.h) */
    pt_watchdog_set_abort("paratrain", PT_EXIT_PEER_LOST);

    int code = 0, help = 0;
    const char *cmd = argc > 1 ? argv[1] : "";
    pt_train_config cfg;
    pt_train_config_defaults(&cfg);
    char ckpt[PT_PATH_MAX] = "", split[16] = "test";
    pt_status st = PT_OK;

    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (rank == 0) usage(stdout);
        goto done;
    }
    if (!strcmp(cmd, "--version")) {
        if (rank == 0) printf("paratrain %s\n", PACKAGE_VERSION);
        goto done;
    }
    if (!strcmp(cmd, "generate")) {
        choose_threads(1); /* quiet: stdout is the generated text */
        code = generate(argc - 2, argv + 2, rank);
        goto done;
    }
    if (strcmp(cmd, "train") && strcmp(cmd, "eval")) {
        st = PT_ERR(PT_ERR_ARG, "see paratrain --help",
                    cmd[0] ? "unknown command '%s'" : "no command given%s", cmd);
        code = 2;
        goto fail;
    }
    int is_eval = !strcmp(cmd, "eval");
    st = parse_args(argc - 2, argv + 2, &cfg, ckpt, split, is_eval, &help);
    if (st != PT_OK) {
        code = 2;
        goto fail;
    }
    if (help) {
        if (rank == 0) usage(stdout);
        goto done;
    }
    if ((st = pt_watchdog_init()) != PT_OK) { /* PT_COLL_TIMEOUT is unusable: a usage error */
        code = 2;
        goto fail;
    }
    /* before anything starts the CPU backend, which sizes OpenBLAS from OpenMP once */
    choose_threads(cfg.quiet);
    if (!is_eval && (st = pt_train_config_check(&cfg)) != PT_OK) goto fail;
    if (is_eval) {
        if (!ckpt[0]) {
            st = PT_ERR(PT_ERR_ARG, "give --ckpt FILE or --ckpt DIR", "eval needs --ckpt");
            code = 2;
            goto fail;
        }
        pt_train_config ov = cfg;
        /* Only flags given explicitly override the checkpoint's data directory. */
        int data_given = 0;
        for (int i = 2; i < argc; i++) data_given |= !strncmp(argv[i], "--data", 6);
        if (!data_given) ov.data[0] = '\0';
        double loss, acc;
        st = pt_eval_checkpoint(ckpt, &ov, split, MPI_COMM_WORLD, &loss, &acc);
        if (st != PT_OK) goto fail;
        pt_log_info("%s loss %.4f  %s accuracy %.4f", split, loss, split, acc);
        goto done;
    }
    pt_train_result res;
    st = pt_train(&cfg, MPI_COMM_WORLD, &res);
    if (st != PT_OK) goto fail;
    if (res.preempted) {
        pt_log_info("stopped at step %lld by a signal; exit code %d (resume with --resume auto)",
                    (long long)res.steps, PT_EXIT_PREEMPTED);
        code = PT_EXIT_PREEMPTED;
        goto done;
    }
    if (res.finished_before) {
        pt_log_info("nothing to train: the checkpoint already holds all %lld steps of this run "
                    "(evaluate it with paratrain eval --ckpt %s)",
                    (long long)res.steps, cfg.ckpt_dir[0] ? cfg.ckpt_dir : cfg.resume);
        goto done;
    }
    if (res.stopped_at) {
        pt_log_info("stopped at step %lld (--stop-at)%s%s; continue with --resume", (long long)res.steps,
                    res.checkpoint[0] ? ": checkpoint " : ", no --ckpt-dir: nothing saved",
                    res.checkpoint);
        goto done;
    }
    pt_log_info("done: %lld steps in %.1f s (%.0f samples/s; data %.1f s, compute %.1f s, "
                "communication %.1f s, update %.1f s)",
                (long long)res.steps, res.train_seconds, res.samples_per_s, res.phase_seconds[0],
                res.phase_seconds[1], res.phase_seconds[2], res.phase_seconds[3]);
    if (res.test_accuracy == res.test_accuracy) /* NaN: the data has no test split */
        pt_log_info("test accuracy %.4f  (test loss %.4f)", res.test_accuracy, res.test_loss);
    goto done;

fail:
    if (pt_watchdog_peer_lost()) goto lost;
    /* Every rank reaches here with the same status (errors are agreed on inside the library;
     * argument errors are the same everywhere), so one rank prints and all exit alike. */
    st = pt_agree(MPI_COMM_WORLD, st, NULL);
    if (pt_watchdog_peer_lost()) goto lost;
    pt_log_error_last("paratrain");
    code = st == PT_ERR_ARG ? 2 : 1; /* the rule above; st is the same on every rank */
done:
    if (pt_watchdog_peer_lost()) goto lost;
    pt_fault_stop_point("finalize", -1); /* PT_FAULT_STOP=R:*:finalize (tests/test_hang.sh) */
    /* MPI_Finalize synchronizes with every rank: a stopped peer would hold it forever */
    pt_watchdog_arm("MPI_Finalize", "the end of the run", -1);
    MPI_Finalize();
    pt_watchdog_disarm();
    return code;
lost:
    /* A peer stopped responding: no agreement or MPI_Finalize can complete without it, so this
     * rank names the cause and MPI_Abort ends every rank, the stopped one included. */
    fprintf(stderr, "paratrain: error: %s\n", pt_watchdog_message());
    fflush(stderr);
    usleep(200000); /* let the launcher forward the line before the abort (as watchdog.c does) */
    MPI_Abort(MPI_COMM_WORLD, PT_EXIT_PEER_LOST);
    return PT_EXIT_PEER_LOST;
}
