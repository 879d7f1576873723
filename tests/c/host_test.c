/* host_test.c: a C11 host that drives real requests through the ancm-core C ABI to real
 * backends (examples/hello/app.py, tests/backends). Usage: host_test <repo root>.
 * Each check prints "ok - name" or "not ok - name: why"; the exit code is the number of
 * failures (capped at 100). */
#define _XOPEN_SOURCE 700 /* nftw, beside POSIX 2008 */

#include "ancm.h"
#include "sha256.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int failures;
static const char *root;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("    check failed (%s:%d): %s: ", __FILE__, __LINE__, #cond);                   \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            ok = false;                                                                            \
        }                                                                                          \
    } while (0)

static ancm_slice str(const char *s) {
    ancm_slice r = {(const uint8_t *)s, strlen(s)};
    return r;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* ---- one request, driven like an asynchronous host: callbacks only queue work; a worker
 * thread answers body requests and acknowledges writes later, as IIS completions would. ---- */

typedef struct test_req test_req;
/* Fills buf with the next body bytes: returns n > 0, 0 for end of body, -1 for "not yet". */
typedef long (*body_source)(test_req *t, uint8_t *buf, size_t cap);
/* WebSocket fragment mode: fills *f (payload in buf); 1 supply, 0 end, -1 not yet. */
typedef int (*fragment_source)(test_req *t, ancm_ws_fragment *f, uint8_t *buf, size_t cap);

struct test_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t worker;
    ancm_request *req;
    bool serialize;
    /* host-side view of outstanding operations, to check serialization */
    bool read_outstanding, write_outstanding, want_read, want_write;
    int violations;
    /* Callbacks of this request running right now, counted outside `mu` (which would serialise
     * them and so hide an overlap). */
    atomic_int in_callback;
    /* response */
    bool got_head, upgraded, done;
    int status, substatus, flushes;
    uint32_t result;
    char message[512];
    char content_type[128];
    char content_type_name[16]; /* the name as delivered: the backend's case */
    uint8_t *body;
    size_t body_len, body_cap, chunks;
    const uint8_t *wdata;
    size_t wlen;
    /* behaviour */
    body_source source;
    uint64_t upload_total, upload_sent;
    sha256 upload_hash;
    long ack_delay_us;
    size_t cancel_after; /* cancel once this many response bytes arrived (0 = never) */
    bool cancel_sent;
    int ws_stage;
    /* WebSocket fragment mode (ancm_request_websocket_fragments) */
    fragment_source frag_source;
    ancm_ws_fragment wfrag; /* the fragment being written */
    int frags_in, frags_text, frags_final;
    bool got_close;
    uint16_t close_status;
    char close_reason[64];
};

/* Called first in every callback, before taking t->mu: false when another callback of the same
 * request is still running (the core must never overlap them). The yield widens the window in
 * which an overlapping callback would be seen. Pair with callback_leave. */
static bool callback_enter(test_req *t) {
    bool alone = atomic_fetch_add(&t->in_callback, 1) == 0;
    sched_yield();
    return alone;
}
static void callback_leave(test_req *t) { atomic_fetch_sub(&t->in_callback, 1); }

static void on_ws_fragment(void *ud, const ancm_ws_fragment *f) {
    test_req *t = ud;
    bool alone = callback_enter(t);
    pthread_mutex_lock(&t->mu);
    if (!alone || t->done || !t->upgraded || t->write_outstanding || t->got_close) t->violations++;
    t->write_outstanding = true;
    t->want_write = true;
    t->wfrag = *f;
    t->wdata = f->data.ptr;
    t->wlen = f->close ? 0 : f->data.len;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    callback_leave(t);
}

static void on_body_wanted(void *ud) {
    test_req *t = ud;
    bool alone = callback_enter(t);
    pthread_mutex_lock(&t->mu);
    if (!alone || t->done || t->read_outstanding || (t->serialize && t->write_outstanding)) t->violations++;
    t->read_outstanding = true;
    t->want_read = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    callback_leave(t);
}

static void on_head(void *ud, const ancm_response_head *head) {
    test_req *t = ud;
    bool alone = callback_enter(t);
    pthread_mutex_lock(&t->mu);
    if (!alone || t->done || t->got_head) t->violations++;
    t->got_head = true;
    t->status = head->status;
    t->substatus = head->substatus;
    t->upgraded = head->upgraded;
    if (t->frag_source && head->upgraded &&
        ancm_request_websocket_fragments(t->req, on_ws_fragment) != ANCM_RESULT_OK)
        t->violations++;
    for (size_t i = 0; i < head->header_count; i++) {
        const ancm_header *h = &head->headers[i];
        if (h->name.len == 12 && strncasecmp((const char *)h->name.ptr, "content-type", 12) == 0 &&
            h->value.len < sizeof t->content_type) {
            memcpy(t->content_type, h->value.ptr, h->value.len);
            t->content_type[h->value.len] = 0;
            memcpy(t->content_type_name, h->name.ptr, 12);
            t->content_type_name[12] = 0;
        }
    }
    pthread_mutex_unlock(&t->mu);
    callback_leave(t);
}

static void on_body(void *ud, const uint8_t *data, size_t len, bool flush) {
    test_req *t = ud;
    bool alone = callback_enter(t);
    pthread_mutex_lock(&t->mu);
    if (!alone || t->done || !t->got_head || t->write_outstanding || len == 0 ||
        (t->serialize && t->read_outstanding))
        t->violations++;
    t->write_outstanding = true;
    t->want_write = true;
    t->wdata = data;
    t->wlen = len;
    if (flush) t->flushes++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    callback_leave(t);
}

static void on_complete(void *ud, ancm_result result, const uint8_t *msg, size_t len) {
    test_req *t = ud;
    bool alone = callback_enter(t);
    pthread_mutex_lock(&t->mu);
    if (!alone || t->done) t->violations++;
    t->done = true;
    t->result = result;
    if (len >= sizeof t->message) len = sizeof t->message - 1;
    memcpy(t->message, msg, len);
    t->message[len] = 0;
    /* Before unlocking: once `done` is seen, the test may end and `t` go away. */
    callback_leave(t);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* The source has nothing yet: keep the read outstanding and try again shortly. Called, and
 * returns, with t->mu held. */
static void retry_read_later(test_req *t) {
    pthread_mutex_unlock(&t->mu);
    sleep_us(1000);
    pthread_mutex_lock(&t->mu);
    t->want_read = true;
}

static void *worker_main(void *p) {
    test_req *t = p;
    uint8_t buf[64 * 1024];
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->want_read && !t->want_write && !t->done) pthread_cond_wait(&t->cv, &t->mu);
        if (t->done) break;
        if (t->want_write) {
            t->want_write = false;
            const uint8_t *data = t->wdata;
            size_t len = t->wlen;
            pthread_mutex_unlock(&t->mu);
            if (t->ack_delay_us) sleep_us(t->ack_delay_us);
            /* The chunk is still valid here, long after the callback returned. */
            if (t->body_len + len > t->body_cap) {
                t->body_cap = (t->body_len + len) * 2;
                t->body = realloc(t->body, t->body_cap);
            }
            if (len) memcpy(t->body + t->body_len, data, len);
            pthread_mutex_lock(&t->mu);
            if (t->frag_source) {
                /* Still valid: the fragment's bytes live until the acknowledgement. */
                t->frags_in++;
                t->frags_text += t->wfrag.utf8;
                t->frags_final += t->wfrag.final_fragment && !t->wfrag.close;
                if (t->wfrag.close) {
                    t->got_close = true;
                    t->close_status = t->wfrag.close_status;
                    size_t n = t->wfrag.data.len < sizeof t->close_reason - 1 ? t->wfrag.data.len
                                                                              : sizeof t->close_reason - 1;
                    memcpy(t->close_reason, t->wfrag.data.ptr, n);
                    t->close_reason[n] = 0;
                }
            }
            t->body_len += len;
            t->chunks++;
            bool cancel = t->cancel_after && t->body_len >= t->cancel_after && !t->cancel_sent;
            t->cancel_sent |= cancel;
            t->write_outstanding = false;
            pthread_mutex_unlock(&t->mu);
            ancm_result r = cancel ? ancm_request_cancel(t->req) : ancm_request_ack_write(t->req);
            pthread_mutex_lock(&t->mu);
            if (r != ANCM_RESULT_OK) t->violations++;
            continue;
        }
        if (t->want_read) {
            t->want_read = false;
            if (t->frag_source && t->upgraded) {
                pthread_mutex_unlock(&t->mu);
                ancm_ws_fragment f;
                memset(&f, 0, sizeof f);
                int k = t->frag_source(t, &f, buf, sizeof buf);
                pthread_mutex_lock(&t->mu);
                if (k < 0) {
                    retry_read_later(t);
                    continue;
                }
                t->read_outstanding = false;
                pthread_mutex_unlock(&t->mu);
                ancm_result r = k > 0 ? ancm_request_supply_ws_fragment(t->req, &f) : ancm_request_end_body(t->req);
                pthread_mutex_lock(&t->mu);
                if (r != ANCM_RESULT_OK) t->violations++;
                continue;
            }
            pthread_mutex_unlock(&t->mu);
            long n = t->source ? t->source(t, buf, sizeof buf) : 0;
            pthread_mutex_lock(&t->mu);
            if (n < 0) {
                retry_read_later(t);
                continue;
            }
            t->read_outstanding = false;
            pthread_mutex_unlock(&t->mu);
            ancm_result r = n > 0 ? ancm_request_supply_body(t->req, buf, (size_t)n)
                                  : ancm_request_end_body(t->req);
            pthread_mutex_lock(&t->mu);
            if (r != ANCM_RESULT_OK) t->violations++;
            continue;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static const ancm_callbacks CALLBACKS = {on_body_wanted, on_head, on_body, on_complete, NULL};

typedef struct header_kv {
    const char *name, *value;
} header_kv;

/* Starts a request and waits (up to timeout_s) for it to complete. */
static bool run_request(ancm_app *app, test_req *t, const char *method, const char *target,
                        const header_kv *hdrs, size_t nhdrs, int64_t content_length, int timeout_s) {
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    ancm_header headers[16];
    for (size_t i = 0; i < nhdrs && i < 16; i++) {
        headers[i].name = str(hdrs[i].name);
        headers[i].value = str(hdrs[i].value);
    }
    ancm_request_head head;
    memset(&head, 0, sizeof head);
    head.method = str(method);
    head.target = str(target);
    head.headers = headers;
    head.header_count = nhdrs;
    head.content_length = content_length;
    head.client_address = str("203.0.113.7");
    head.client_port = 50123;
    head.serialize_io = t->serialize;
    if (t->source == NULL && content_length != 0) return false;
    pthread_create(&t->worker, NULL, worker_main, t);
    ancm_result r = ancm_request_start(app, &head, &CALLBACKS, t, &t->req);
    if (r != ANCM_RESULT_OK) {
        printf("    ancm_request_start: %s\n", ancm_result_message(r));
        pthread_mutex_lock(&t->mu);
        t->done = true;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->worker, NULL);
        return false;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_s;
    pthread_mutex_lock(&t->mu);
    bool timed_out = false;
    while (!t->done && !timed_out)
        timed_out = pthread_cond_timedwait(&t->cv, &t->mu, &deadline) == ETIMEDOUT;
    pthread_mutex_unlock(&t->mu);
    if (timed_out) { /* cancel, then complete must still come */
        printf("    timed out after %d s; cancelling\n", timeout_s);
        ancm_request_cancel(t->req);
        pthread_mutex_lock(&t->mu);
        while (!t->done) pthread_cond_wait(&t->cv, &t->mu);
        pthread_mutex_unlock(&t->mu);
    }
    pthread_join(t->worker, NULL);
    return !timed_out;
}

static void finish_request(test_req *t) {
    ancm_request_free(t->req);
    free(t->body);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
}

static bool body_contains(test_req *t, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= t->body_len; i++)
        if (memcmp(t->body + i, needle, n) == 0) return true;
    return false;
}

static void report(const char *name, bool ok) {
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
    fflush(stdout);
    if (!ok) failures++;
}

/* ---- sites ---- */

static char site_dir[256];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(100); }
    fputs(text, f);
    fclose(f);
}

/* Writes <dir>/web.config running `python3 <script> <args>` and returns the config path. */
static void make_site(const char *name, const char *script, const char *extra_attrs, char *config_path,
                      size_t cap) {
    char dir[512], xml[2048];
    snprintf(dir, sizeof dir, "%s/%s", site_dir, name);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) { perror(dir); exit(100); }
    snprintf(xml, sizeof xml,
             "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration><system.webServer>\n"
             "<aspNetCore processPath=\"python3\" arguments=\"%s/%s\" %s />\n"
             "</system.webServer></configuration>\n",
             root, script, extra_attrs);
    snprintf(config_path, cap, "%s/web.config", dir);
    write_file(config_path, xml);
}

static ancm_app *new_app(const char *config_path) {
    ancm_config *config = NULL;
    ancm_error *error = NULL;
    ancm_result r = ancm_config_from_file((const uint8_t *)config_path, strlen(config_path), &config, &error);
    if (r != ANCM_RESULT_OK) {
        printf("    config %s: %s: %s\n", config_path, ancm_result_message(r), ancm_error_message(error));
        ancm_error_free(error);
        return NULL;
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s", config_path);
    *strrchr(dir, '/') = 0;
    ancm_host_info host;
    memset(&host, 0, sizeof host);
    host.site_root = str(dir);
    host.websockets_supported = true;
    ancm_app *app = NULL;
    r = ancm_app_new(config, &host, &app);
    ancm_config_free(config);
    if (r != ANCM_RESULT_OK) printf("    ancm_app_new: %s\n", ancm_result_message(r));
    return app;
}

/* ---- the checks ---- */

static void test_get(ancm_app *app) {
    bool ok = true;
    test_req t;
    memset(&t, 0, sizeof t);
    header_kv h[] = {{"Host", "example.test"}, {"X-Ancm-Test", "from-c"}};
    CHECK(run_request(app, &t, "GET", "/json?q=%2F", h, 2, 0, 60), "request did not finish");
    CHECK(t.result == ANCM_RESULT_OK, "result %u: %s", t.result, t.message);
    CHECK(t.status == 200, "status %d", t.status);
    CHECK(strstr(t.content_type, "application/json") != NULL, "content-type %s", t.content_type);
    /* Names keep the backend's case (examples/hello/app.py sends `Content-Type`), as IIS's own
     * ANCM passes them to IHttpResponse::SetHeader (issue 16 item 6). */
    CHECK(strcmp(t.content_type_name, "Content-Type") == 0, "content-type name arrived as %s",
          t.content_type_name);
    CHECK(body_contains(&t, "\"GET\""), "no method in body");
    CHECK(body_contains(&t, "/json?q=%2F"), "raw target not forwarded");
    CHECK(body_contains(&t, "from-c"), "header not forwarded");
    CHECK(body_contains(&t, "203.0.113.7"), "client address not forwarded");
    CHECK(t.violations == 0, "%d protocol violations", t.violations);
    finish_request(&t);
    report("GET /json through the C ABI", ok);
}

static long pattern_source(test_req *t, uint8_t *buf, size_t cap) {
    uint64_t left = t->upload_total - t->upload_sent;
    size_t n = left < cap ? (size_t)left : cap;
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)((t->upload_sent + i) * 7 + 3);
    sha256_update(&t->upload_hash, buf, n);
    t->upload_sent += n;
    return (long)n;
}

static void test_upload(ancm_app *app, uint64_t size, bool chunked) {
    bool ok = true;
    test_req t;
    memset(&t, 0, sizeof t);
    t.source = pattern_source;
    t.upload_total = size;
    sha256_init(&t.upload_hash);
    char len[32];
    snprintf(len, sizeof len, "%llu", (unsigned long long)size);
    header_kv h[] = {{"Content-Type", "application/octet-stream"},
                     {chunked ? "Transfer-Encoding" : "Content-Length", chunked ? "chunked" : len}};
    CHECK(run_request(app, &t, "POST", "/json", h, 2, chunked ? -1 : (int64_t)size, 180), "did not finish");
    CHECK(t.result == ANCM_RESULT_OK, "result %u: %s", t.result, t.message);
    CHECK(t.status == 200, "status %d", t.status);
    CHECK(t.upload_sent == size, "sent %llu", (unsigned long long)t.upload_sent);
    char hex[65], expect_len[64];
    sha256_hex(&t.upload_hash, hex);
    snprintf(expect_len, sizeof expect_len, "\"body_len\": %llu", (unsigned long long)size);
    CHECK(body_contains(&t, hex), "backend's body_sha256 differs from %s", hex);
    CHECK(body_contains(&t, expect_len), "no %s", expect_len);
    CHECK(t.violations == 0, "%d protocol violations", t.violations);
    finish_request(&t);
    char name[128];
    snprintf(name, sizeof name, "streamed %llu-byte upload (%s), SHA-256 checked by the backend",
             (unsigned long long)size, chunked ? "chunked" : "Content-Length");
    report(name, ok);
}

static void test_download(ancm_app *app, size_t size) {
    bool ok = true;
    test_req t;
    memset(&t, 0, sizeof t);
    t.ack_delay_us = 2000; /* a slow client: every write takes 2 ms */
    char target[64];
    snprintf(target, sizeof target, "/bytes?n=%zu", size);
    CHECK(run_request(app, &t, "GET", target, NULL, 0, 0, 180), "did not finish");
    CHECK(t.result == ANCM_RESULT_OK, "result %u: %s", t.result, t.message);
    CHECK(t.status == 200, "status %d", t.status);
    CHECK(t.body_len == size, "got %zu bytes", t.body_len);
    size_t bad = 0;
    for (size_t i = 0; i < t.body_len; i++) bad += t.body[i] != (uint8_t)(i & 0xff);
    CHECK(bad == 0, "%zu bytes differ from the pattern", bad);
    CHECK(t.chunks > 1, "one chunk only");
    CHECK(t.violations == 0, "%d protocol violations (a chunk came before the previous ack?)", t.violations);
    finish_request(&t);
    report("streamed download with slow acknowledgements (one write outstanding at a time)", ok);
}

static void test_cancel(ancm_app *app) {
    bool ok = true;
    test_req t;
    memset(&t, 0, sizeof t);
    t.cancel_after = 1; /* the client goes away after the first chunk */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK(run_request(app, &t, "GET", "/stream?n=200&delay=0.05", NULL, 0, 0, 60), "did not finish");
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    CHECK(t.result == ANCM_RESULT_CANCELLED, "result %u: %s", t.result, t.message);
    CHECK(t.status == 200, "status %d", t.status);
    CHECK(t.chunks >= 1 && t.chunks < 200, "%zu chunks", t.chunks);
    CHECK(secs < 8.0, "cancel took %.1f s (the whole stream is 10 s)", secs);
    CHECK(t.violations == 0, "%d protocol violations", t.violations);
    finish_request(&t);
    report("client disconnect mid-response (ancm_request_cancel)", ok);
}

/* Cancelled while the backend has not answered yet: the engine waits on the backend, not on the
 * host, so only the cancel itself can end the request this early (the backend sleeps 12 s). */
static void test_cancel_before_head(ancm_app *app) {
    bool ok = true;
    test_req t;
    memset(&t, 0, sizeof t);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    /* run_request cancels when its 1 s are up, then waits for complete */
    run_request(app, &t, "GET", "/sleep?s=12", NULL, 0, 0, 1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    CHECK(t.done, "complete never came");
    CHECK(t.result == ANCM_RESULT_CANCELLED, "result %u: %s", t.result, t.message);
    CHECK(t.status == 0, "a response head came (status %d)", t.status);
    CHECK(secs < 8.0, "cancel took %.1f s (the backend answers after 12 s)", secs);
    CHECK(t.violations == 0, "%d protocol violations", t.violations);
    finish_request(&t);
    report("client disconnect before the response head (ancm_request_cancel)", ok);
}

static void test_serialized_echo(ancm_app *app) {
    /* The backend answers (echoes) while the upload is still going: with serialize_io the core
     * must alternate reads and writes, never overlapping them. */
    bool ok = true;
    test_req t;
    memset(&t, 0, sizeof t);
    t.serialize = true;
    t.source = pattern_source;
    t.upload_total = 4u << 20;
    t.ack_delay_us = 200;
    sha256_init(&t.upload_hash);
    header_kv h[] = {{"Content-Type", "application/octet-stream"}, {"Transfer-Encoding", "chunked"}};
    CHECK(run_request(app, &t, "POST", "/echo", h, 2, -1, 120), "did not finish");
    CHECK(t.result == ANCM_RESULT_OK, "result %u: %s", t.result, t.message);
    CHECK(t.status == 200, "status %d", t.status);
    CHECK(t.body_len == t.upload_total, "echoed %zu bytes", t.body_len);
    size_t bad = 0;
    for (size_t i = 0; i < t.body_len; i++) bad += t.body[i] != (uint8_t)(i * 7 + 3);
    CHECK(bad == 0, "%zu echoed bytes differ", bad);
    CHECK(t.violations == 0, "%d serialization violations", t.violations);
    finish_request(&t);
    report("serialize_io: backend answering during the upload (echo), reads and writes never overlap", ok);
}

/* ---- many requests in flight at once: more than the core keeps idle driver tasks for (256),
 * in two waves, so drivers are spawned, reused for the second wave and the surplus retired; every
 * request must complete with 200. ---- */

#define MANY 300

struct many_req {
    ancm_request *req;
    int status;
    bool done;
};

static struct many_req many[MANY];
static int many_done, many_ok;
static pthread_mutex_t many_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t many_cv = PTHREAD_COND_INITIALIZER;

static void many_body_wanted(void *ud) { ancm_request_end_body(((struct many_req *)ud)->req); }
static void many_head(void *ud, const ancm_response_head *head) { ((struct many_req *)ud)->status = head->status; }
static void many_body(void *ud, const uint8_t *data, size_t len, bool flush) {
    (void)data, (void)len, (void)flush;
    ancm_request_ack_write(((struct many_req *)ud)->req);
}
static void many_complete(void *ud, ancm_result result, const uint8_t *msg, size_t len) {
    struct many_req *m = ud;
    (void)msg, (void)len;
    pthread_mutex_lock(&many_mu);
    ancm_request_free(m->req);
    m->done = true;
    many_done++;
    if (result == ANCM_RESULT_OK && m->status == 200) many_ok++;
    pthread_cond_signal(&many_cv);
    pthread_mutex_unlock(&many_mu);
}
static const ancm_callbacks MANY_CALLBACKS = {many_body_wanted, many_head, many_body, many_complete, NULL};

/* The head of a GET /json with one header, `Host: example.test`, from 203.0.113.7:`port`. */
static const ancm_header JSON_HEADERS[] = {{{(const uint8_t *)"Host", 4}, {(const uint8_t *)"example.test", 12}}};
static ancm_request_head json_head(uint16_t port) {
    ancm_request_head head;
    memset(&head, 0, sizeof head);
    head.method = str("GET");
    head.target = str("/json");
    head.headers = JSON_HEADERS;
    head.header_count = 1;
    head.client_address = str("203.0.113.7");
    head.client_port = port;
    return head;
}

static void test_many_in_flight(ancm_app *app) {
    bool ok = true;
    ancm_request_head head = json_head(50124);
    for (int wave = 0; wave < 2; wave++) {
        memset(many, 0, sizeof many);
        many_done = many_ok = 0;
        int started = 0;
        for (int i = 0; i < MANY; i++) {
            pthread_mutex_lock(&many_mu); /* many[i].req is written before any callback runs */
            ancm_result r = ancm_request_start(app, &head, &MANY_CALLBACKS, &many[i], &many[i].req);
            if (r == ANCM_RESULT_OK) started++;
            else many[i].done = true;
            pthread_mutex_unlock(&many_mu);
        }
        CHECK(started == MANY, "wave %d: %d of %d started", wave + 1, started, MANY);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 120;
        bool timed_out = false;
        pthread_mutex_lock(&many_mu);
        while (many_done < started && !timed_out)
            timed_out = pthread_cond_timedwait(&many_cv, &many_mu, &deadline) == ETIMEDOUT;
        if (timed_out) { /* complete still comes for every cancelled request */
            for (int i = 0; i < MANY; i++)
                if (!many[i].done) ancm_request_cancel(many[i].req);
            while (many_done < started) pthread_cond_wait(&many_cv, &many_mu);
        }
        pthread_mutex_unlock(&many_mu);
        CHECK(!timed_out, "wave %d timed out", wave + 1);
        CHECK(many_ok == started, "wave %d: %d of %d answered 200", wave + 1, many_ok, started);
    }
    report("300 requests in flight at once, twice (driver tasks spawned, reused, retired)", ok);
}

/* ---- requests started from inside complete: each of 4 chains starts its next request from the
 * previous one's complete callback (the core runs it on the driver task that delivered that
 * complete, once the callback returns); every tenth step also starts a second request from the
 * same callback (that one goes to another driver). Every request must complete with 200. ---- */

#define CHAINS 4
#define CHAIN_LEN 40
#define CHAIN_MAX (CHAINS * CHAIN_LEN * 2)

struct chain_req {
    struct many_req base; /* first, so that the many_* callbacks serve chain requests too */
    int step;
    bool extra;
};

static struct chain_req chain_reqs[CHAIN_MAX];
static int chain_used, chain_started, chain_done, chain_ok;
static ancm_app *chain_app;
static ancm_request_head chain_head;
static pthread_mutex_t chain_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t chain_cv = PTHREAD_COND_INITIALIZER;

static void chain_complete(void *ud, ancm_result result, const uint8_t *msg, size_t len);
static const ancm_callbacks CHAIN_CALLBACKS = {many_body_wanted, many_head, many_body, chain_complete, NULL};

/* Starts one request of a chain; the caller holds chain_mu (so req is written before any
 * callback of the request reads it). */
static void chain_start(int step, bool extra) {
    if (chain_used == CHAIN_MAX) return;
    struct chain_req *c = &chain_reqs[chain_used++];
    memset(c, 0, sizeof *c);
    c->step = step;
    c->extra = extra;
    if (ancm_request_start(chain_app, &chain_head, &CHAIN_CALLBACKS, c, &c->base.req) == ANCM_RESULT_OK)
        chain_started++;
}

static void chain_complete(void *ud, ancm_result result, const uint8_t *msg, size_t len) {
    struct chain_req *c = ud;
    (void)msg, (void)len;
    pthread_mutex_lock(&chain_mu);
    ancm_request_free(c->base.req);
    c->base.req = NULL;
    if (result == ANCM_RESULT_OK && c->base.status == 200) chain_ok++;
    if (!c->extra && c->step + 1 < CHAIN_LEN) {
        chain_start(c->step + 1, false);
        if ((c->step + 1) % 10 == 0) chain_start(c->step + 1, true);
    }
    /* Counted after the successors started: done == started means nothing is left in flight. */
    chain_done++;
    pthread_cond_signal(&chain_cv);
    pthread_mutex_unlock(&chain_mu);
}

static void test_started_from_complete(ancm_app *app) {
    bool ok = true;
    chain_head = json_head(50125);
    chain_app = app;
    pthread_mutex_lock(&chain_mu);
    for (int i = 0; i < CHAINS; i++) chain_start(0, false);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 120;
    bool timed_out = false;
    while (chain_done < chain_started && !timed_out)
        timed_out = pthread_cond_timedwait(&chain_cv, &chain_mu, &deadline) == ETIMEDOUT;
    if (timed_out) { /* complete still comes for every cancelled request */
        for (int i = 0; i < chain_used; i++)
            if (chain_reqs[i].base.req) ancm_request_cancel(chain_reqs[i].base.req);
        while (chain_done < chain_started) pthread_cond_wait(&chain_cv, &chain_mu);
    }
    int expected = CHAINS * CHAIN_LEN + CHAINS * ((CHAIN_LEN - 1) / 10);
    CHECK(!timed_out, "requests started from complete timed out (%d of %d done)", chain_done, chain_started);
    CHECK(chain_started == expected, "%d of %d requests started", chain_started, expected);
    CHECK(chain_ok == chain_started, "%d of %d answered 200", chain_ok, chain_started);
    pthread_mutex_unlock(&chain_mu);
    report("requests started from inside complete (chains, and a second start from the same callback)", ok);
}

static void test_startup_failure(void) {
    bool ok = true;
    char config[512];
    make_site("crash", "tests/backends/crash_at_startup.py", "startupTimeLimit=\"10\"", config, sizeof config);
    ancm_app *app = new_app(config);
    CHECK(app != NULL, "no app");
    if (app) {
        test_req t;
        memset(&t, 0, sizeof t);
        CHECK(run_request(app, &t, "GET", "/", NULL, 0, 0, 60), "did not finish");
        CHECK(t.result == ANCM_RESULT_OK, "result %u: %s", t.result, t.message);
        CHECK(t.status == 502 && t.substatus == 5, "status %d.%d", t.status, t.substatus);
        CHECK(body_contains(&t, "crash_at_startup"), "the page does not show the process output");
        finish_request(&t);
        CHECK(ancm_app_stop(app) == ANCM_RESULT_OK, "stop");
        ancm_app_free(app);
    }
    report("502.5 when the application cannot start", ok);
}

static void test_config_errors(void) {
    bool ok = true;
    char config[512];
    make_site("badconfig", "examples/hello/app.py", "startupTimeLimit=\"9999\"", config, sizeof config);
    ancm_config *c = NULL;
    ancm_error *e = NULL;
    ancm_result r = ancm_config_from_file((const uint8_t *)config, strlen(config), &c, &e);
    CHECK(r == ANCM_RESULT_CONFIG_INVALID, "result %u", r);
    CHECK(c == NULL, "config written on failure");
    CHECK(e != NULL && strstr(ancm_error_message(e), "aspNetCore/@startupTimeLimit = \"9999\": must be") != NULL,
          "message: %s", ancm_error_message(e));
    CHECK(e != NULL && strstr(ancm_error_message(e), "web.config") != NULL, "no file in: %s", ancm_error_message(e));
    CHECK(ancm_error_kind(e) == ANCM_CONFIG_ERROR_KIND_OUT_OF_RANGE, "kind %u", ancm_error_kind(e));
    ancm_error_free(e);

    /* key by key, UTF-8 and UTF-16 */
    ancm_config_builder *b = NULL;
    CHECK(ancm_config_builder_new((const uint8_t *)"settings", 8, 0, &b) == ANCM_RESULT_OK, "new");
    e = NULL;
    r = ancm_config_builder_set(b, (const uint8_t *)"processpath", 11, (const uint8_t *)"x", 1, &e);
    CHECK(r == ANCM_RESULT_CONFIG_INVALID, "result %u", r);
    CHECK(e && strstr(ancm_error_message(e), "settings: aspNetCore/@processpath") &&
              strstr(ancm_error_message(e), "case-sensitive"),
          "message: %s", ancm_error_message(e));
    ancm_error_free(e);
    e = NULL;
    const uint16_t key[] = {'s', 't', 'd', 'o', 'u', 't', 'L', 'o', 'g', 'E', 'n', 'a', 'b', 'l', 'e', 'd'};
    const uint16_t val[] = {'m', 'a', 'y', 'b', 'e'};
    CHECK(ancm_config_builder_set_utf16(b, key, 16, val, 5, &e) == ANCM_RESULT_OK, "utf16 set");
    const uint16_t lone[] = {0xD800};
    r = ancm_config_builder_add_environment_variable_utf16(b, lone, 1, val, 5, &e);
    CHECK(r == ANCM_RESULT_CONFIG_INVALID && ancm_error_kind(e) == ANCM_CONFIG_ERROR_KIND_INVALID_ENCODING,
          "lone surrogate: %u", r);
    ancm_error_free(e);
    e = NULL;
    r = ancm_config_builder_build(b, &c, &e); /* consumes b */
    CHECK(r == ANCM_RESULT_CONFIG_INVALID, "build result %u", r);
    CHECK(e && (strstr(ancm_error_message(e), "processPath") || strstr(ancm_error_message(e), "stdoutLogEnabled")),
          "message: %s", ancm_error_message(e));
    printf("    build error: %s\n", ancm_error_message(e));
    ancm_error_free(e);

    /* argument checks */
    CHECK(ancm_config_from_file(NULL, 3, &c, NULL) == ANCM_RESULT_NULL_PARAMETER, "NULL path");
    CHECK(ancm_config_from_file((const uint8_t *)"\xff", 1, &c, NULL) == ANCM_RESULT_INVALID_UTF8, "bad UTF-8");
    CHECK(ancm_config_builder_new((const uint8_t *)"s", 1, 7, &b) == ANCM_RESULT_INVALID_ARGUMENT, "dialect");
    CHECK(ancm_request_start(NULL, NULL, NULL, NULL, NULL) == ANCM_RESULT_NULL_PARAMETER, "start NULL");
    CHECK(ancm_request_ack_write(NULL) == ANCM_RESULT_NULL_PARAMETER, "ack NULL");
    CHECK(strcmp(ancm_result_message(ANCM_RESULT_CONFIG_INVALID), "the configuration is invalid") == 0, "msg");
    CHECK(strcmp(ancm_result_message(123456), "unknown result code") == 0, "unknown code");
    CHECK(strcmp(ancm_version(), ANCM_VERSION) == 0, "version %s vs %s", ancm_version(), ANCM_VERSION);
    report("configuration errors reach C with their one-line messages; argument checks", ok);
}

/* GET /version of tests/backends/versioned.py into `out` ("<version> <pid>"); false on failure. */
static bool get_version(ancm_app *app, char *out, size_t cap) {
    test_req t;
    memset(&t, 0, sizeof t);
    header_kv h[] = {{"Host", "example.test"}};
    bool ok = run_request(app, &t, "GET", "/version", h, 1, 0, 60) && t.result == ANCM_RESULT_OK && t.status == 200;
    size_t n = ok && t.body_len < cap ? t.body_len : 0;
    memcpy(out, t.body, n);
    out[n] = 0;
    finish_request(&t);
    return ok && n > 0;
}

/* Polls /version until it differs from `before` (a new generation serves), within 30 s. */
static bool wait_new_generation(ancm_app *app, const char *before, char *now, size_t cap) {
    for (int i = 0; i < 300; i++) {
        if (get_version(app, now, cap) && strcmp(now, before) != 0) return true;
        sleep_us(100000);
    }
    return false;
}

/* recycleOnFileChange key by key (as the IIS glue builds it): a file named through the UTF-8
   call and one through the UTF-16 call each start a new generation when they change. */
static void test_recycle_on_file_change(void) {
    bool ok = true;
    char dir[512], path[600], args[600];
    snprintf(dir, sizeof dir, "%s/recycle", site_dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) { perror(dir); exit(100); }
    snprintf(path, sizeof path, "%s/version.txt", dir);
    write_file(path, "v1");
    snprintf(path, sizeof path, "%s/watched.txt", dir);
    write_file(path, "1");
    snprintf(path, sizeof path, "%s/other.txt", dir);
    write_file(path, "1");
    snprintf(args, sizeof args, "%s/tests/backends/versioned.py", root);
    ancm_config_builder *b = NULL;
    ancm_error *e = NULL;
    CHECK(ancm_config_builder_new((const uint8_t *)"recycle", 7, ANCM_DIALECT_ASP_NET_CORE, &b) == ANCM_RESULT_OK, "new");
    CHECK(ancm_config_builder_set(b, (const uint8_t *)"processPath", 11, (const uint8_t *)"python3", 7, &e) ==
              ANCM_RESULT_OK, "processPath");
    CHECK(ancm_config_builder_set(b, (const uint8_t *)"arguments", 9, (const uint8_t *)args, strlen(args), &e) ==
              ANCM_RESULT_OK, "arguments");
    CHECK(ancm_config_builder_add_recycle_on_file_change(b, (const uint8_t *)"watched.txt", 11, &e) == ANCM_RESULT_OK,
          "UTF-8 file");
    const uint16_t other[] = {'o', 't', 'h', 'e', 'r', '.', 't', 'x', 't'};
    CHECK(ancm_config_builder_add_recycle_on_file_change_utf16(b, other, 9, &e) == ANCM_RESULT_OK, "UTF-16 file");
    const uint16_t lone[] = {0xD800};
    ancm_result r = ancm_config_builder_add_recycle_on_file_change_utf16(b, lone, 1, &e);
    CHECK(r == ANCM_RESULT_CONFIG_INVALID && e && ancm_error_kind(e) == ANCM_CONFIG_ERROR_KIND_INVALID_ENCODING &&
              strstr(ancm_error_message(e), "aspNetCore/recycleOnFileChange/file/@path"),
          "lone surrogate: %u %s", r, e ? ancm_error_message(e) : "");
    ancm_error_free(e);
    e = NULL;
    ancm_config *config = NULL;
    CHECK(ancm_config_builder_build(b, &config, &e) == ANCM_RESULT_OK, "build: %s", e ? ancm_error_message(e) : "");
    ancm_error_free(e);
    ancm_app *app = NULL;
    if (config) {
        ancm_host_info host;
        memset(&host, 0, sizeof host);
        host.site_root = str(dir);
        CHECK(ancm_app_new(config, &host, &app) == ANCM_RESULT_OK, "app");
        ancm_config_free(config);
    }
    char first[128] = "", second[128] = "", third[128] = "";
    if (app) {
        CHECK(get_version(app, first, sizeof first) && strncmp(first, "v1 ", 3) == 0, "first: %s", first);
        snprintf(path, sizeof path, "%s/watched.txt", dir);
        write_file(path, "22");
        CHECK(wait_new_generation(app, first, second, sizeof second) && strncmp(second, "v1 ", 3) == 0,
              "after watched.txt changed: %s (was %s)", second, first);
        snprintf(path, sizeof path, "%s/version.txt", dir);
        write_file(path, "v2");
        snprintf(path, sizeof path, "%s/other.txt", dir);
        write_file(path, "333");
        CHECK(wait_new_generation(app, second, third, sizeof third) && strncmp(third, "v2 ", 3) == 0,
              "after other.txt changed: %s (was %s)", third, second);
        ancm_app_stop(app);
        ancm_app_free(app);
    }
    /* httpPlatform has no such collection */
    CHECK(ancm_config_builder_new((const uint8_t *)"hp", 2, ANCM_DIALECT_HTTP_PLATFORM, &b) == ANCM_RESULT_OK, "new hp");
    r = ancm_config_builder_add_recycle_on_file_change(b, (const uint8_t *)"x", 1, &e);
    CHECK(r == ANCM_RESULT_CONFIG_INVALID && e && strstr(ancm_error_message(e), "httpPlatform/recycleOnFileChange"),
          "httpPlatform: %u %s", r, e ? ancm_error_message(e) : "");
    ancm_error_free(e);
    ancm_config_builder_free(b);
    report("recycleOnFileChange through the builder (UTF-8 and UTF-16): each file's change starts a new generation",
           ok);
}

static void test_request_errors(ancm_app *app) {
    bool ok = true;
    test_req t;
    memset(&t, 0, sizeof t);
    ancm_request_head head;
    memset(&head, 0, sizeof head);
    head.method = str("GET");
    head.target = str("/");
    head.client_address = str("not-an-ip");
    ancm_request *req = NULL;
    CHECK(ancm_request_start(app, &head, &CALLBACKS, &t, &req) == ANCM_RESULT_INVALID_CLIENT_ADDRESS, "addr");
    head.client_address = str("::1");
    head.method = str("G E T");
    CHECK(ancm_request_start(app, &head, &CALLBACKS, &t, &req) == ANCM_RESULT_INVALID_METHOD, "method");
    head.method = str("GET");
    ancm_header bad = {str("bad name"), str("v")};
    head.headers = &bad;
    head.header_count = 1;
    CHECK(ancm_request_start(app, &head, &CALLBACKS, &t, &req) == ANCM_RESULT_INVALID_HEADER, "header");
    head.header_count = 0;
    ancm_callbacks missing = CALLBACKS;
    missing.complete = NULL;
    CHECK(ancm_request_start(app, &head, &missing, &t, &req) == ANCM_RESULT_MISSING_CALLBACK, "callback");
    CHECK(req == NULL, "request written on failure");
    report("ancm_request_start rejects bad heads without calling back", ok);
}

/* WebSocket: a masked client frame carrying `payload` (len < 126). */
static size_t ws_frame(uint8_t *out, uint8_t opcode, const char *payload, size_t len) {
    const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    out[0] = (uint8_t)(0x80 | opcode);
    out[1] = (uint8_t)(0x80 | len);
    memcpy(out + 2, mask, 4);
    for (size_t i = 0; i < len; i++) out[6 + i] = (uint8_t)payload[i] ^ mask[i % 4];
    return 6 + len;
}

static const char WS_TEXT[] = "hello from C through ancm";

static long ws_source(test_req *t, uint8_t *buf, size_t cap) {
    (void)cap;
    switch (t->ws_stage) {
    case 0:
        t->ws_stage = 1;
        return (long)ws_frame(buf, 0x1, WS_TEXT, strlen(WS_TEXT));
    case 1: { /* wait for the echo before closing */
        pthread_mutex_lock(&t->mu);
        bool echoed = t->body_len >= 2 + strlen(WS_TEXT);
        pthread_mutex_unlock(&t->mu);
        if (!echoed) return -1;
        t->ws_stage = 2;
        return (long)ws_frame(buf, 0x8, "\x03\xe8", 2); /* close, 1000 */
    }
    default:
        return -1; /* keep the client side open; the server closes after the close handshake */
    }
}

static void test_websocket(const char *config) {
    bool ok = true;
    ancm_app *app = new_app(config);
    CHECK(app != NULL, "no app");
    if (app) {
        test_req t;
        memset(&t, 0, sizeof t);
        t.source = ws_source;
        header_kv h[] = {{"Host", "example.test"},
                         {"Connection", "Upgrade"},
                         {"Upgrade", "websocket"},
                         {"Sec-WebSocket-Version", "13"},
                         {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}};
        CHECK(run_request(app, &t, "GET", "/echo", h, 5, 0, 60), "did not finish");
        CHECK(t.status == 101 && t.upgraded, "status %d upgraded %d", t.status, t.upgraded);
        CHECK(t.result == ANCM_RESULT_OK, "result %u: %s", t.result, t.message);
        size_t n = strlen(WS_TEXT);
        CHECK(t.body_len >= 2 + n && t.body[0] == 0x81 && t.body[1] == n && memcmp(t.body + 2, WS_TEXT, n) == 0,
              "echo frame not found in %zu bytes", t.body_len);
        CHECK(t.body_len >= 2 + n + 2 && t.body[2 + n] == 0x88, "no close frame from the server");
        CHECK(t.violations == 0, "%d protocol violations", t.violations);
        finish_request(&t);
        CHECK(ancm_app_stop(app) == ANCM_RESULT_OK, "stop");
        ancm_app_free(app);
    }
    report("WebSocket upgrade: echo over the bidirectional byte stream", ok);
}

/* Fragment mode: a text message in two fragments, then 100 KiB of binary in two, then a close. */
#define WS_BIG (100 * 1024)
static int frag_echo_source(test_req *t, ancm_ws_fragment *f, uint8_t *buf, size_t cap) {
    (void)cap;
    pthread_mutex_lock(&t->mu);
    size_t have = t->body_len;
    pthread_mutex_unlock(&t->mu);
    switch (t->ws_stage) {
    case 0:
        t->ws_stage = 1;
        memcpy(buf, "hello ", 6);
        *f = (ancm_ws_fragment){.data = {buf, 6}, .utf8 = true, .final_fragment = false};
        return 1;
    case 1:
        t->ws_stage = 2;
        memcpy(buf, "fragments", 9);
        *f = (ancm_ws_fragment){.data = {buf, 9}, .utf8 = true, .final_fragment = true};
        return 1;
    case 2:
    case 3: { /* the binary message in two fragments of half each (buf holds 64 KiB) */
        if (have < 15) return -1;
        size_t from = t->ws_stage == 2 ? 0 : WS_BIG / 2;
        for (size_t i = 0; i < WS_BIG / 2; i++) buf[i] = (uint8_t)((from + i) * 7 + ((from + i) >> 8));
        *f = (ancm_ws_fragment){.data = {buf, WS_BIG / 2}, .final_fragment = t->ws_stage == 3};
        t->ws_stage++;
        return 1;
    }
    case 4:
        if (have < 15 + WS_BIG) return -1;
        t->ws_stage = 5;
        memcpy(buf, "bye", 3);
        *f = (ancm_ws_fragment){.data = {buf, 3}, .close = true, .close_status = 1000};
        return 1;
    default:
        return -1; /* nothing after a close; the backend ends the connection */
    }
}

/* Fragment mode, the backend closes first: answer its close with the same status. */
static int frag_close_source(test_req *t, ancm_ws_fragment *f, uint8_t *buf, size_t cap) {
    (void)cap;
    pthread_mutex_lock(&t->mu);
    bool closed = t->got_close;
    uint16_t status = t->close_status;
    pthread_mutex_unlock(&t->mu);
    if (t->ws_stage == 0) {
        t->ws_stage = 1;
        buf[0] = 'x';
        *f = (ancm_ws_fragment){.data = {buf, 1}, .utf8 = true, .final_fragment = true};
        return 1;
    }
    if (t->ws_stage == 1 && closed) {
        t->ws_stage = 2;
        *f = (ancm_ws_fragment){.close = true, .close_status = status};
        return 1;
    }
    return -1;
}

/* Fragment mode, the client vanishes without a close after one echo: end_body. */
static int frag_vanish_source(test_req *t, ancm_ws_fragment *f, uint8_t *buf, size_t cap) {
    (void)cap;
    pthread_mutex_lock(&t->mu);
    size_t have = t->body_len;
    pthread_mutex_unlock(&t->mu);
    if (t->ws_stage == 0) {
        t->ws_stage = 1;
        buf[0] = 'v';
        *f = (ancm_ws_fragment){.data = {buf, 1}, .utf8 = true, .final_fragment = true};
        return 1;
    }
    if (t->ws_stage == 1 && have >= 1) {
        t->ws_stage = 2;
        return 0;
    }
    return -1;
}

static void test_websocket_fragments(const char *config) {
    bool ok = true;
    ancm_app *app = new_app(config);
    CHECK(app != NULL, "no app");
    if (app) {
        header_kv h[] = {{"Host", "example.test"},
                         {"Connection", "Upgrade"},
                         {"Upgrade", "websocket"},
                         {"Sec-WebSocket-Version", "13"},
                         {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}};
        test_req t;
        memset(&t, 0, sizeof t);
        t.frag_source = frag_echo_source;
        t.serialize = true;   /* ignored after the upgrade: both directions run at once */
        CHECK(run_request(app, &t, "GET", "/echo", h, 5, 0, 60), "did not finish");
        CHECK(t.status == 101 && t.upgraded, "status %d upgraded %d", t.status, t.upgraded);
        CHECK(t.result == ANCM_RESULT_OK, "result %u: %s", t.result, t.message);
        bool big_ok = t.body_len == 15 + WS_BIG && memcmp(t.body, "hello fragments", 15) == 0;
        for (size_t i = 0; big_ok && i < WS_BIG; i++) big_ok = t.body[15 + i] == (uint8_t)(i * 7 + (i >> 8));
        CHECK(big_ok, "echoed %zu bytes, not the text and the 100 KiB", t.body_len);
        CHECK(t.frags_text >= 1 && t.frags_final == 2, "text fragments %d, final %d", t.frags_text, t.frags_final);
        CHECK(t.got_close && t.close_status == 1000, "close %d status %u", t.got_close, t.close_status);
        CHECK(t.violations == 0, "%d protocol violations", t.violations);
        finish_request(&t);

        memset(&t, 0, sizeof t);
        t.frag_source = frag_close_source;
        CHECK(run_request(app, &t, "GET", "/close-after", h, 5, 0, 60), "did not finish");
        CHECK(t.result == ANCM_RESULT_OK, "result %u: %s", t.result, t.message);
        CHECK(t.body_len == 1 && t.body[0] == 'x', "echo of the one message");
        CHECK(t.got_close && t.close_status == 4001 && strcmp(t.close_reason, "server-bye") == 0,
              "server close %d %u '%s'", t.got_close, t.close_status, t.close_reason);
        CHECK(t.violations == 0, "%d protocol violations", t.violations);
        finish_request(&t);

        memset(&t, 0, sizeof t);
        t.frag_source = frag_vanish_source;
        CHECK(run_request(app, &t, "GET", "/echo", h, 5, 0, 60), "did not finish");
        CHECK(t.result == ANCM_RESULT_UPGRADE_FAILED, "client gone without a close: result %u: %s", t.result,
              t.message);
        CHECK(t.body_len == 1 && !t.got_close, "one echo, no close");
        CHECK(t.violations == 0, "%d protocol violations", t.violations);
        finish_request(&t);
        CHECK(ancm_app_stop(app) == ANCM_RESULT_OK, "stop");
        ancm_app_free(app);
    }
    report("WebSocket upgrade as fragments: fragmented text, 100 KiB binary, both closes, a vanished client", ok);
}

static atomic_int log_count;
/* Event Log ids seen with their message: a start (1001) and a start failure (1020). */
static atomic_int started_events, failed_events;

static void on_log(void *ud, ancm_log_level level, uint32_t event, const uint8_t *msg, size_t len) {
    (void)ud;
    atomic_fetch_add(&log_count, 1);
    if (event == ANCM_EVENT_PROCESS_START_SUCCESS && level == ANCM_LOG_LEVEL_INFO &&
        strstr((const char *)msg, "listening on port") != NULL) /* msg is NUL-terminated too */
        atomic_fetch_add(&started_events, 1);
    if (event == ANCM_EVENT_PROCESS_START_FAILURE && level == ANCM_LOG_LEVEL_ERROR)
        atomic_fetch_add(&failed_events, 1);
    if (level <= ANCM_LOG_LEVEL_WARN) fprintf(stderr, "    [ancm %u] %.*s\n", level, (int)len, (const char *)msg);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

/* A passing run leaves nothing in /tmp; a failing one keeps its site (app logs) to read. */
static int finish(void) {
    if (failures == 0) nftw(site_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failures > 100 ? 100 : failures;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <repo root> [--quick] [--no-ws]\n", argv[0]);
        return 100;
    }
    root = argv[1];
    bool quick = false, ws = true, ws_only = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        if (strcmp(argv[i], "--no-ws") == 0) ws = false;
        if (strcmp(argv[i], "--ws-only") == 0) ws_only = true;
    }
    snprintf(site_dir, sizeof site_dir, "/tmp/ancm-c-test-XXXXXX");
    if (!mkdtemp(site_dir)) { perror("mkdtemp"); return 100; }
    if (ancm_log_set_callback(on_log, NULL, ANCM_LOG_LEVEL_INFO) != ANCM_RESULT_OK) failures++;

    char config[512];
    if (ws_only) {
        make_site("ws", "tests/backends/ws_echo.py", "", config, sizeof config);
        test_websocket(config);
        test_websocket_fragments(config);
        return finish();
    }
    test_config_errors();
    test_recycle_on_file_change();

    make_site("hello", "examples/hello/app.py", "", config, sizeof config);
    ancm_app *app = new_app(config);
    report("app from a web.config file", app != NULL);
    if (app) {
        test_request_errors(app);
        test_get(app);
        test_upload(app, quick ? (2u << 20) : (20u << 20), false);
        test_upload(app, quick ? (1u << 20) : (3u << 20), true);
        test_download(app, quick ? (1u << 20) : (8u << 20));
        test_cancel(app);
        test_cancel_before_head(app);
        test_serialized_echo(app);
        test_many_in_flight(app);
        test_started_from_complete(app);
        ancm_app_status st;
        bool ok = ancm_app_get_status(app, &st) == ANCM_RESULT_OK && st.process_count == 1 && !st.shutting_down;
        ancm_process_info procs[4];
        size_t n = 0;
        ok = ok && ancm_app_processes(app, procs, 4, &n) == ANCM_RESULT_OK && n == 1 && procs[0].pid > 0;
        ok = ok && ancm_app_stop(app) == ANCM_RESULT_OK;
        ok = ok && ancm_app_get_status(app, &st) == ANCM_RESULT_OK && st.process_count == 0 && st.shutting_down;
        report("app status, processes, graceful stop", ok);
        ancm_app_free(app);
    }
    test_startup_failure();
    if (ws) {
        make_site("ws", "tests/backends/ws_echo.py", "", config, sizeof config);
        test_websocket(config);
        test_websocket_fragments(config);
    }
    report("log callback received the engine's messages", atomic_load(&log_count) > 0);
    report("a process start came with Event Log id 1001, a start failure with 1020",
           atomic_load(&started_events) > 0 && atomic_load(&failed_events) > 0);
    ancm_log_set_callback(NULL, NULL, ANCM_LOG_LEVEL_OFF);
    printf("host_test: %d failure(s)\n", failures);
    return finish();
}
