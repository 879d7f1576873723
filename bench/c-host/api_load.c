/* api_load.c: the C side of benchmark case (h), "C ABI vs Rust API" (cargo xtask bench --only h).
 *
 * Keeps K small GETs in flight through include/ancm.h against the app of a web.config (the
 * harness points it at bench-backend), for W warm-up requests and then N measured ones, and
 * prints the process CPU time (getrusage RUSAGE_SELF: this thread and the engine's runtime
 * threads) of the measured phase. Its twin, bench/src/bin/api-load-rust.rs, does the same work
 * through the engine's Rust API; the difference between the two is the cost of the C ABI.
 *
 * The host does what an asynchronous host does and nothing else: callbacks check what they
 * receive, acknowledge each chunk at once, and `complete` starts the slot's next request (the
 * ABI allows every ancm_request_* call from inside a callback). Every response is checked
 * (status 200, Content-Length 13, body "Hello, World!" as bench-backend's /small sends it), so a
 * broken path cannot look fast: any bad response makes the exit status non-zero.
 *
 * With --host-thread, `complete` only queues its slot and the main thread (the host's own thread)
 * starts every request, as IIS does from OnExecuteRequestHandler on its threads; --target PATH
 * asks for another bench-backend route (/small-real: the same body with Kestrel's head).
 *
 * Usage: api-load-c [--host-thread] [--target PATH] <web.config> <in flight K> <warm-up W> <requests N>
 * Prints: requests=N in_flight=K cpu_s=.. user_s=.. sys_s=.. wall_s=.. bad=0 */
#define _POSIX_C_SOURCE 200809L

#include "ancm.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char BODY[] = "Hello, World!";
#define BODY_LEN (sizeof BODY - 1)

/* One in-flight slot: a request and what its callbacks have seen so far. */
struct slot {
    ancm_request *req;
    uint16_t status;
    bool length_ok;
    size_t got;
    bool body_ok;
};

static ancm_app *app;
static ancm_request_head head;
static ancm_callbacks callbacks;

/* Requests still to start in the current phase, requests completed, and bad responses. */
static atomic_long to_start;
static atomic_long done;
static atomic_long bad;
static atomic_long target; /* read by callbacks of a phase while main may be setting the next one */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
/* --host-thread: slots whose request completed, waiting for the host thread to start the next. */
static bool host_thread;
static struct slot **queue;
static long queued;

static ancm_slice text(const char *s) {
    ancm_slice r = {(const uint8_t *)s, strlen(s)};
    return r;
}

static bool same(ancm_slice s, const char *lit) {
    size_t n = strlen(lit);
    if (s.len != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = (char)s.ptr[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lit[i]) return false;
    }
    return true;
}

static void finish_one(void) {
    if (atomic_fetch_add(&done, 1) + 1 == atomic_load(&target)) {
        pthread_mutex_lock(&mu);
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
}

static void start(struct slot *s) {
    s->status = 0;
    s->length_ok = false;
    s->got = 0;
    s->body_ok = true;
    if (ancm_request_start(app, &head, &callbacks, s, &s->req) != ANCM_RESULT_OK) {
        atomic_fetch_add(&bad, 1);
        finish_one();
    }
}

/* A GET has content_length 0: the core never asks; answer "no body" should it ever. */
static void body_wanted(void *ud) { ancm_request_end_body(((struct slot *)ud)->req); }

static void response_head(void *ud, const ancm_response_head *h) {
    struct slot *s = ud;
    s->status = h->status;
    for (size_t i = 0; i < h->header_count; i++)
        if (same(h->headers[i].name, "content-length")) s->length_ok = same(h->headers[i].value, "13");
}

static void response_body(void *ud, const uint8_t *data, size_t len, bool flush) {
    struct slot *s = ud;
    (void)flush;
    if (s->got + len > BODY_LEN || memcmp(data, BODY + s->got, len) != 0) s->body_ok = false;
    s->got += len;
    ancm_request_ack_write(s->req);
}

static void complete(void *ud, ancm_result result, const uint8_t *msg, size_t len) {
    struct slot *s = ud;
    bool ok = result == ANCM_RESULT_OK && s->status == 200 && s->length_ok && s->body_ok && s->got == BODY_LEN;
    if (!ok) {
        if (atomic_fetch_add(&bad, 1) < 5)
            fprintf(stderr, "api-load-c: bad response: result %u, status %u, %zu body bytes: %.*s\n",
                    (unsigned)result, (unsigned)s->status, s->got, (int)len, (const char *)msg);
    }
    ancm_request_free(s->req);
    s->req = NULL;
    /* Start the slot's next request before counting this one, so the last count is the last
     * callback touching the phase. */
    if (atomic_fetch_sub(&to_start, 1) > 0) {
        if (!host_thread) {
            start(s);
        } else {
            pthread_mutex_lock(&mu);
            queue[queued++] = s;
            pthread_cond_signal(&cv);
            pthread_mutex_unlock(&mu);
        }
    }
    finish_one();
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

/* Runs `n` requests with `k` in flight and waits until all have completed. */
static void phase(struct slot *slots, long k, long n) {
    if (k > n) k = n;
    atomic_store(&done, 0);
    atomic_store(&to_start, n - k);
    atomic_store(&target, n);
    for (long i = 0; i < k; i++) start(&slots[i]);
    pthread_mutex_lock(&mu);
    while (atomic_load(&done) < n) {
        while (queued > 0) {
            struct slot *s = queue[--queued];
            pthread_mutex_unlock(&mu);
            start(s);
            pthread_mutex_lock(&mu);
        }
        if (atomic_load(&done) < n) pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
}

static long arg_long(const char *s, const char *what) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0 || v == LONG_MAX) {
        fprintf(stderr, "api-load-c: %s must be a positive number, not %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *path = "/small";
    while (argc > 1 && strncmp(argv[1], "--", 2) == 0) {
        if (strcmp(argv[1], "--host-thread") == 0) {
            host_thread = true;
            argv++, argc--;
        } else if (strcmp(argv[1], "--target") == 0 && argc > 2) {
            path = argv[2];
            argv += 2, argc -= 2;
        } else {
            break;
        }
    }
    if (argc != 5) {
        fprintf(stderr, "usage: %s [--host-thread] [--target PATH] <web.config> <in flight K> <warm-up W> <requests N>\n", argv[0]);
        return 2;
    }
    const char *config_path = argv[1];
    long k = arg_long(argv[2], "K"), warm = arg_long(argv[3], "W"), n = arg_long(argv[4], "N");

    ancm_config *config = NULL;
    ancm_error *error = NULL;
    ancm_result r = ancm_config_from_file((const uint8_t *)config_path, strlen(config_path), &config, &error);
    if (r != ANCM_RESULT_OK) {
        fprintf(stderr, "api-load-c: %s\n", error ? ancm_error_message(error) : ancm_result_message(r));
        ancm_error_free(error);
        return 1;
    }
    /* The site root is the web.config's folder, as ancm-serve takes it. */
    char *site = strdup(config_path);
    char *slash = site ? strrchr(site, '/') : NULL;
    if (!slash) {
        fprintf(stderr, "api-load-c: give the web.config as an absolute path\n");
        return 2;
    }
    *slash = '\0';
    ancm_host_info host = {text(site), text("/"), text(""), 0, true};
    r = ancm_app_new(config, &host, &app);
    ancm_config_free(config);
    if (r != ANCM_RESULT_OK) {
        fprintf(stderr, "api-load-c: ancm_app_new: %s\n", ancm_result_message(r));
        return 1;
    }

    static const ancm_header headers[] = {
        {{(const uint8_t *)"Host", 4}, {(const uint8_t *)"127.0.0.1", 9}},
        {{(const uint8_t *)"User-Agent", 10}, {(const uint8_t *)"api-load", 8}},
        {{(const uint8_t *)"Accept", 6}, {(const uint8_t *)"*/*", 3}},
    };
    head.method = text("GET");
    head.target = text(path);
    head.headers = headers;
    head.header_count = sizeof headers / sizeof headers[0];
    head.content_length = 0;
    head.client_address = text("127.0.0.1");
    head.client_port = 40000;
    callbacks.body_wanted = body_wanted;
    callbacks.response_head = response_head;
    callbacks.response_body = response_body;
    callbacks.complete = complete;

    struct slot *slots = calloc((size_t)k, sizeof *slots);
    queue = calloc((size_t)k, sizeof *queue);
    if (!slots || !queue) return 1;
    phase(slots, k, warm); /* starts the app's process, fills the connection pool */
    long bad_warm = atomic_load(&bad);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    phase(slots, k, n);
    double wall = now_s() - t0;
    getrusage(RUSAGE_SELF, &ru1);

    double user = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
    double sys = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
    long nbad = atomic_load(&bad);
    printf("requests=%ld in_flight=%ld cpu_s=%.6f user_s=%.6f sys_s=%.6f wall_s=%.6f bad=%ld warm_bad=%ld\n", n, k,
           user + sys, user, sys, wall, nbad - bad_warm, bad_warm);
    fflush(stdout);

    ancm_app_stop(app);
    ancm_app_free(app);
    free(slots);
    free(queue);
    free(site);
    return nbad == 0 ? 0 : 1;
}
