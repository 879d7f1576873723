/* grpc_test.c: a C11 host that drives gRPC calls and HTTP/2 trailers and resets through the
 * ancm-core C ABI to real h2c apps (web.config backendProtocol=h2c): a grpcio server
 * (tests/backends/grpc_server.py, generic handlers on raw bytes, so a message is the 5-byte gRPC
 * prefix and the bytes themselves) and an app on the h2 library (tests/backends/h2_raw.py) for
 * request trailers and resets with chosen codes. Usage: grpc_test <repo root>.
 * Each check prints "ok - name" or "not ok - name: why"; the exit code is the number of failures.
 *
 * The host is the simplest the ABI allows: every answer (supply, ack, reset) is given from inside
 * the callback that asks for it, which the ABI permits. */
#define _XOPEN_SOURCE 700

#include "ancm.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define MAX_FIELDS 16

typedef struct field {
    char name[64];
    char value[256];
    size_t value_len;
} field;

typedef struct call {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ancm_request *req;
    /* request */
    const uint8_t *body;
    size_t body_len;
    bool body_sent;
    const ancm_header *req_trailers; /* ends the body with these (NULL: end_body) */
    size_t req_trailer_count;
    bool hold_body;      /* never answer body_wanted */
    uint32_t reset_code; /* reset once the head came and the body is wanted (0: never) */
    bool wanted, headed, reset_sent;
    /* response */
    int status;
    field head[MAX_FIELDS];
    size_t head_count;
    uint8_t data[65536];
    size_t data_len;
    field trailers[MAX_FIELDS];
    size_t trailer_count;
    int trailer_calls, late_calls;
    bool done;
    ancm_result result;
    char message[512];
} call;

static void copy_fields(field *out, size_t *count, const ancm_header *h, size_t n) {
    for (size_t i = 0; i < n && *count < MAX_FIELDS; i++) {
        field *f = &out[(*count)++];
        size_t nl = h[i].name.len < sizeof f->name - 1 ? h[i].name.len : sizeof f->name - 1;
        memcpy(f->name, h[i].name.ptr, nl);
        f->name[nl] = 0;
        f->value_len = h[i].value.len < sizeof f->value - 1 ? h[i].value.len : sizeof f->value - 1;
        memcpy(f->value, h[i].value.ptr, f->value_len);
        f->value[f->value_len] = 0;
    }
}

static const field *find(const field *fs, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(fs[i].name, name) == 0) return &fs[i];
    return NULL;
}

/* With c->mu held: the host-side reset, once both the head and a body request were seen (the
 * engine then waits in the body for the host, so the code reaches the backend). */
static void maybe_reset(call *c) {
    if (c->reset_code && c->wanted && c->headed && !c->reset_sent) {
        c->reset_sent = true;
        if (ancm_request_reset(c->req, c->reset_code) != ANCM_RESULT_OK) c->late_calls++;
    }
}

static void on_body_wanted(void *ud) {
    call *c = ud;
    pthread_mutex_lock(&c->mu);
    c->wanted = true;
    if (c->hold_body) {
        maybe_reset(c);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    bool first = !c->body_sent;
    c->body_sent = true;
    pthread_mutex_unlock(&c->mu);
    if (first && c->body_len) {
        ancm_request_supply_body(c->req, c->body, c->body_len);
    } else if (c->req_trailers) {
        ancm_result r = ancm_request_supply_trailers(c->req, c->req_trailers, c->req_trailer_count);
        if (r != ANCM_RESULT_OK) printf("    supply_trailers: %s\n", ancm_result_message(r));
    } else {
        ancm_request_end_body(c->req);
    }
}

static void on_head(void *ud, const ancm_response_head *head) {
    call *c = ud;
    pthread_mutex_lock(&c->mu);
    c->status = head->status;
    copy_fields(c->head, &c->head_count, head->headers, head->header_count);
    c->headed = true;
    maybe_reset(c);
    pthread_mutex_unlock(&c->mu);
}

static void on_body(void *ud, const uint8_t *data, size_t len, bool flush) {
    (void)flush;
    call *c = ud;
    pthread_mutex_lock(&c->mu);
    if (c->trailer_calls) c->late_calls++; /* no data after the trailers */
    size_t n = len < sizeof c->data - c->data_len ? len : sizeof c->data - c->data_len;
    memcpy(c->data + c->data_len, data, n);
    c->data_len += n;
    pthread_mutex_unlock(&c->mu);
    ancm_request_ack_write(c->req);
}

static void on_trailers(void *ud, const ancm_header *headers, size_t count) {
    call *c = ud;
    pthread_mutex_lock(&c->mu);
    c->trailer_calls++;
    copy_fields(c->trailers, &c->trailer_count, headers, count);
    pthread_mutex_unlock(&c->mu);
}

static void on_complete(void *ud, ancm_result result, const uint8_t *msg, size_t len) {
    call *c = ud;
    pthread_mutex_lock(&c->mu);
    c->result = result;
    if (len >= sizeof c->message) len = sizeof c->message - 1;
    memcpy(c->message, msg, len);
    c->message[len] = 0;
    c->done = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static const ancm_callbacks CALLBACKS = {on_body_wanted, on_head, on_body, on_complete, on_trailers};

/* A POST with an unknown-length body, as HTTP/2 clients send gRPC calls; waits up to 60 s. */
static bool run(ancm_app *app, call *c, const char *target, const char *content_type) {
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    ancm_header h[] = {
        {str("Host"), str("grpc.test")},
        {str("Content-Type"), str(content_type)},
        {str("TE"), str("trailers")},
    };
    ancm_request_head head;
    memset(&head, 0, sizeof head);
    head.method = str("POST");
    head.target = str(target);
    head.headers = h;
    head.header_count = 3;
    head.content_length = -1;
    head.client_address = str("203.0.113.9");
    head.client_port = 50200;
    ancm_result r = ancm_request_start(app, &head, &CALLBACKS, c, &c->req);
    if (r != ANCM_RESULT_OK) {
        printf("    ancm_request_start: %s\n", ancm_result_message(r));
        return false;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&c->mu);
    bool timed_out = false;
    while (!c->done && !timed_out)
        timed_out = pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT;
    pthread_mutex_unlock(&c->mu);
    if (timed_out) {
        printf("    timed out; cancelling\n");
        ancm_request_cancel(c->req);
        pthread_mutex_lock(&c->mu);
        while (!c->done) pthread_cond_wait(&c->cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
    }
    return !timed_out;
}

static void finish(call *c) {
    ancm_request_free(c->req);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static void report(const char *name, bool ok) {
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
    fflush(stdout);
    if (!ok) failures++;
}

/* One gRPC message: flag 0 (uncompressed), 4-byte big-endian length, the bytes. */
static size_t grpc_frame(uint8_t *out, const char *msg) {
    size_t n = strlen(msg);
    out[0] = 0;
    out[1] = (uint8_t)(n >> 24);
    out[2] = (uint8_t)(n >> 16);
    out[3] = (uint8_t)(n >> 8);
    out[4] = (uint8_t)n;
    memcpy(out + 5, msg, n);
    return n + 5;
}

/* Splits the response data into gRPC messages; returns how many, or -1 if the framing is broken. */
static int grpc_messages(const call *c, char msgs[][64], int max) {
    size_t at = 0;
    int n = 0;
    while (at < c->data_len) {
        if (c->data_len - at < 5 || c->data[at] != 0 || n == max) return -1;
        size_t len = (size_t)c->data[at + 1] << 24 | (size_t)c->data[at + 2] << 16 |
                     (size_t)c->data[at + 3] << 8 | c->data[at + 4];
        if (len >= 64 || c->data_len - at - 5 < len) return -1;
        memcpy(msgs[n], c->data + at + 5, len);
        msgs[n][len] = 0;
        n++;
        at += 5 + len;
    }
    return n;
}

static char site_dir[256];

static ancm_app *h2c_app(const char *name, const char *script) {
    char dir[512], path[600], xml[2048];
    snprintf(dir, sizeof dir, "%s/%s", site_dir, name);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return NULL;
    snprintf(xml, sizeof xml,
             "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration><system.webServer>\n"
             "<aspNetCore processPath=\"python3\" arguments=\"%s/%s\">\n"
             "<handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\" />"
             "</handlerSettings></aspNetCore>\n</system.webServer></configuration>\n",
             root, script);
    snprintf(path, sizeof path, "%s/web.config", dir);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(xml, f);
    fclose(f);
    ancm_config *config = NULL;
    ancm_error *error = NULL;
    if (ancm_config_from_file((const uint8_t *)path, strlen(path), &config, &error) != ANCM_RESULT_OK) {
        printf("    config: %s\n", ancm_error_message(error));
        ancm_error_free(error);
        return NULL;
    }
    ancm_host_info host;
    memset(&host, 0, sizeof host);
    host.site_root = str(dir);
    ancm_app *app = NULL;
    ancm_result r = ancm_app_new(config, &host, &app);
    ancm_config_free(config);
    if (r != ANCM_RESULT_OK) printf("    ancm_app_new: %s\n", ancm_result_message(r));
    return app;
}

static void test_unary(ancm_app *app) {
    bool ok = true;
    call c;
    memset(&c, 0, sizeof c);
    uint8_t req[64];
    c.body_len = grpc_frame(req, "hello over the C ABI");
    c.body = req;
    CHECK(run(app, &c, "/test.Echo/Unary", "application/grpc"), "did not finish");
    CHECK(c.result == ANCM_RESULT_OK, "result %u: %s", c.result, c.message);
    CHECK(c.status == 200, "status %d", c.status);
    char msgs[4][64];
    int n = grpc_messages(&c, msgs, 4);
    CHECK(n == 1 && strcmp(msgs[0], "hello over the C ABI") == 0, "%d messages, first '%s'", n,
          n > 0 ? msgs[0] : "");
    CHECK(c.trailer_calls == 1, "%d response_trailers calls", c.trailer_calls);
    const field *st = find(c.trailers, c.trailer_count, "grpc-status");
    CHECK(st && strcmp(st->value, "0") == 0, "grpc-status trailer %s", st ? st->value : "missing");
    CHECK(c.late_calls == 0, "%d data chunks after the trailers", c.late_calls);
    finish(&c);
    report("unary gRPC call to grpcio through the C ABI: message, grpc-status 0 trailer", ok);
}

static void test_server_stream(ancm_app *app) {
    bool ok = true;
    call c;
    memset(&c, 0, sizeof c);
    uint8_t req[16];
    c.body_len = grpc_frame(req, "5");
    c.body = req;
    CHECK(run(app, &c, "/test.Echo/ServerStream", "application/grpc"), "did not finish");
    CHECK(c.result == ANCM_RESULT_OK, "result %u: %s", c.result, c.message);
    char msgs[8][64];
    int n = grpc_messages(&c, msgs, 8);
    CHECK(n == 5, "%d messages", n);
    for (int i = 0; i < n && i < 5; i++) {
        char want[16];
        snprintf(want, sizeof want, "msg-%d", i);
        CHECK(strcmp(msgs[i], want) == 0, "message %d is '%s'", i, msgs[i]);
    }
    const field *st = find(c.trailers, c.trailer_count, "grpc-status");
    CHECK(c.trailer_calls == 1 && st && strcmp(st->value, "0") == 0, "grpc-status trailer %s",
          st ? st->value : "missing");
    finish(&c);
    report("server-streaming gRPC call through the C ABI: 5 messages, then the trailers", ok);
}

/* grpcio answers an aborted call with a body, so the status and metadata come as trailers. */
static void test_failing_call(ancm_app *app) {
    bool ok = true;
    call c;
    memset(&c, 0, sizeof c);
    uint8_t req[16];
    c.body_len = grpc_frame(req, "fail");
    c.body = req;
    CHECK(run(app, &c, "/test.Echo/Unary", "application/grpc"), "did not finish");
    CHECK(c.result == ANCM_RESULT_OK, "result %u: %s", c.result, c.message);
    /* A trailers-only answer puts them in the head instead: look in both. */
    const field *st = find(c.trailers, c.trailer_count, "grpc-status");
    if (!st) st = find(c.head, c.head_count, "grpc-status");
    CHECK(st && strcmp(st->value, "3") == 0, "grpc-status %s", st ? st->value : "missing");
    const field *bin = find(c.trailers, c.trailer_count, "x-detail-bin");
    if (!bin) bin = find(c.head, c.head_count, "x-detail-bin");
    CHECK(bin != NULL, "x-detail-bin metadata missing");
    const field *msg = find(c.trailers, c.trailer_count, "grpc-message");
    if (!msg) msg = find(c.head, c.head_count, "grpc-message");
    CHECK(msg && strstr(msg->value, "bad argument") != NULL, "grpc-message %s", msg ? msg->value : "missing");
    finish(&c);
    report("failing gRPC call: grpc-status 3, grpc-message and binary metadata reach the host", ok);
}

static void test_request_trailers(ancm_app *app) {
    bool ok = true;
    call c;
    memset(&c, 0, sizeof c);
    static uint8_t body[1000];
    memset(body, 'b', sizeof body);
    c.body = body;
    c.body_len = sizeof body;
    ancm_header t[] = {
        {str("x-req-trailer"), str("tv")},
        {str("x-other"), str("2")},
        {str("MS-ASPNETCORE-TOKEN"), str("forged")}, /* never passes */
    };
    c.req_trailers = t;
    c.req_trailer_count = 3;
    CHECK(run(app, &c, "/echo", "application/octet-stream"), "did not finish");
    CHECK(c.result == ANCM_RESULT_OK, "result %u: %s", c.result, c.message);
    c.data[c.data_len < sizeof c.data ? c.data_len : sizeof c.data - 1] = 0;
    const char *seen = (const char *)c.data;
    CHECK(strstr(seen, "\"body_len\": 1000") != NULL, "body: %s", seen);
    CHECK(strstr(seen, "\"trailers\": [[\"x-req-trailer\", \"tv\"], [\"x-other\", \"2\"]]") != NULL,
          "request trailers lost or a forged one passed: %s", seen);
    const field *et = find(c.trailers, c.trailer_count, "x-echo-trailer");
    CHECK(et && strcmp(et->value, "done") == 0, "response trailer %s", et ? et->value : "missing");
    finish(&c);
    report("request trailers from the host reach an h2c app (MS-ASPNETCORE-* left out); its trailers come back",
           ok);
}

static void test_backend_reset(ancm_app *app) {
    bool ok = true;
    call c;
    memset(&c, 0, sizeof c);
    CHECK(run(app, &c, "/reset?code=11", "application/octet-stream"), "did not finish");
    CHECK(c.result == ANCM_RESULT_STREAM_RESET, "result %u: %s", c.result, c.message);
    uint32_t code = 0;
    ancm_result r = ancm_request_reset_code(c.req, &code);
    CHECK(r == ANCM_RESULT_OK && code == 11, "reset code %u (%s)", code, ancm_result_message(r));
    CHECK(c.trailer_calls == 0, "trailers after a reset");
    finish(&c);
    report("a backend's RST_STREAM (ENHANCE_YOUR_CALM) reaches the host as STREAM_RESET with its code", ok);
}

static void test_host_reset(ancm_app *app) {
    bool ok = true;
    call c;
    memset(&c, 0, sizeof c);
    c.hold_body = true;
    c.reset_code = 13; /* HTTP_1_1_REQUIRED: a code the engine never picks itself */
    CHECK(run(app, &c, "/hold", "application/octet-stream"), "did not finish");
    CHECK(c.reset_sent, "the reset was never sent");
    CHECK(c.result == ANCM_RESULT_CANCELLED, "result %u: %s", c.result, c.message);
    uint32_t code = 0;
    CHECK(ancm_request_reset_code(c.req, &code) == ANCM_RESULT_NOT_RESET, "backend reset reported");
    finish(&c);
    char log[600], got[64] = "";
    snprintf(log, sizeof log, "%s/h2raw/resets.log", site_dir);
    for (int i = 0; i < 100 && got[0] == 0; i++) {
        FILE *f = fopen(log, "r");
        if (f) {
            size_t n = fread(got, 1, sizeof got - 1, f);
            got[n] = 0;
            fclose(f);
        }
        if (got[0] == 0) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(strcmp(got, "13\n") == 0, "the app saw resets '%s'", got);
    report("ancm_request_reset(13) while the body is open resets the app's stream with 13", ok);
}

static int remove_tree(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: grpc_test <repo root>\n");
        return 100;
    }
    root = argv[1];
    snprintf(site_dir, sizeof site_dir, "/tmp/ancm-grpc-test-XXXXXX");
    if (!mkdtemp(site_dir)) return 100;
    ancm_app *app = h2c_app("grpc", "tests/backends/grpc_server.py");
    report("h2c app from a web.config", app != NULL);
    if (app) {
        test_unary(app);
        test_server_stream(app);
        test_failing_call(app);
        ancm_app_stop(app);
        ancm_app_free(app);
    }
    app = h2c_app("h2raw", "tests/backends/h2_raw.py");
    if (app) {
        test_request_trailers(app);
        test_backend_reset(app);
        test_host_reset(app);
        ancm_app_stop(app);
        ancm_app_free(app);
    }
    remove_tree(site_dir);
    printf("grpc_test: %d failure(s)\n", failures);
    return failures > 100 ? 100 : failures;
}
