/* abi_rules.c: what a host gets when its request head or body breaks a rule of the C ABI
 * (docs/c-api.md, "What a host gets when it breaks a rule"), through real requests to the real
 * examples/hello backend. Usage: abi_rules <repo root>. Each check prints "ok - name" or
 * "not ok - name: why"; the exit code is the number of failures (capped at 100). */
#define _POSIX_C_SOURCE 200809L

#include "ancm.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("    check failed (%s:%d): %s: ", __FILE__, __LINE__, #cond);                   \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            ok = false;                                                                            \
        }                                                                                          \
    } while (0)

static void report(const char *name, bool ok) {
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
    fflush(stdout);
    if (!ok) failures++;
}

static ancm_slice str(const char *s) {
    ancm_slice r = {(const uint8_t *)s, s ? strlen(s) : 0};
    return r;
}

/* ---- one request, answered from the main thread: callbacks only record and signal ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ancm_request *req;
    int wanted;   /* body_wanted calls so far */
    int answered; /* of those, answered by the test */
    bool got_head, from_engine, done;
    int status, substatus;
    ancm_result result;
    char message[256];
    char body[4096];
    size_t body_len;
} rq;

static void on_wanted(void *ud) {
    rq *r = ud;
    pthread_mutex_lock(&r->mu);
    r->wanted++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_head(void *ud, const ancm_response_head *h) {
    rq *r = ud;
    pthread_mutex_lock(&r->mu);
    r->got_head = true;
    r->status = h->status;
    r->substatus = h->substatus;
    r->from_engine = h->from_engine;
    pthread_mutex_unlock(&r->mu);
}

static void on_body(void *ud, const uint8_t *data, size_t len, bool flush) {
    rq *r = ud;
    (void)flush;
    pthread_mutex_lock(&r->mu);
    size_t room = sizeof r->body - 1 - r->body_len;
    size_t n = len < room ? len : room;
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    pthread_mutex_unlock(&r->mu);
    ancm_request_ack_write(r->req); /* allowed from inside a callback */
}

static void on_complete(void *ud, ancm_result result, const uint8_t *msg, size_t len) {
    rq *r = ud;
    pthread_mutex_lock(&r->mu);
    r->done = true;
    r->result = result;
    if (len >= sizeof r->message) len = sizeof r->message - 1;
    memcpy(r->message, msg, len);
    r->message[len] = 0;
    /* Signalled with the lock held: once `done` is seen, main() may free `r`'s request and
     * reuse `r` (userdata is not touched after this). */
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static const ancm_callbacks callbacks = {on_wanted, on_head, on_body, on_complete, NULL};

/* Waits (at most `seconds`) until the request asked for body beyond what was answered, or
 * completed. Returns true when it asked. */
static bool wait_wanted(rq *r, int seconds) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&r->mu);
    while (r->wanted == r->answered && !r->done)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) break;
    bool asked = r->wanted > r->answered;
    if (asked) r->answered++;
    pthread_mutex_unlock(&r->mu);
    return asked;
}

/* Waits (at most `seconds`) for `complete`; false when it did not come. */
static bool wait_done(rq *r, int seconds) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) break;
    bool done = r->done;
    pthread_mutex_unlock(&r->mu);
    return done;
}

/* Cancels (when not done), waits for `complete` and frees: leaves nothing behind, whatever
 * the outcome. */
static void finish(rq *r) {
    if (!wait_done(r, 0)) ancm_request_cancel(r->req);
    wait_done(r, 60);
    ancm_request_free(r->req);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

typedef struct {
    const char *name, *value;
} kv;

static ancm_result start(ancm_app *app, rq *r, const char *method, const char *target, const kv *hs,
                         size_t n, int64_t content_length) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    ancm_header headers[8];
    headers[0].name = str("Host");
    headers[0].value = str("localhost");
    for (size_t i = 0; i < n && i < 7; i++) {
        headers[i + 1].name = str(hs[i].name);
        headers[i + 1].value = str(hs[i].value);
    }
    ancm_request_head head;
    memset(&head, 0, sizeof head);
    head.method = str(method);
    head.target = str(target);
    head.headers = headers;
    head.header_count = n + 1;
    head.content_length = content_length;
    head.client_address = str("127.0.0.1");
    head.client_port = 40000;
    return ancm_request_start(app, &head, &callbacks, r, &r->req);
}

static ancm_result supply(rq *r, const char *bytes) {
    return ancm_request_supply_body(r->req, (const uint8_t *)bytes, strlen(bytes));
}

/* ---- the rules ---- */

/* More bytes than content_length: the supply is refused and the request fails. */
static void test_body_too_long(ancm_app *app) {
    bool ok = true;
    rq r;
    ancm_result s = start(app, &r, "POST", "/echo", NULL, 0, 5);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_wanted(&r, 60), "no body_wanted");
        CHECK(supply(&r, "hel") == ANCM_RESULT_OK, "a first part within the length");
        CHECK(wait_wanted(&r, 60), "no second body_wanted");
        s = supply(&r, "lo, world");
        CHECK(s == ANCM_RESULT_BODY_LENGTH_MISMATCH, "supply past content_length gave %u (%s)", s,
              ancm_result_message(s));
        CHECK(wait_done(&r, 60), "no complete after the refused supply");
        CHECK(r.result == ANCM_RESULT_BODY_REFUSED, "complete %u: %s", r.result, r.message);
        CHECK(!(r.got_head && r.status == 200 && r.result == ANCM_RESULT_OK), "completed as a success");
        finish(&r);
    }
    report("more body bytes than content_length: BODY_LENGTH_MISMATCH, complete BODY_REFUSED", ok);
}

/* The end of the body before content_length bytes: refused the same way. */
static void test_body_too_short(ancm_app *app) {
    bool ok = true;
    rq r;
    ancm_result s = start(app, &r, "POST", "/echo", NULL, 0, 10);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_wanted(&r, 60), "no body_wanted");
        CHECK(supply(&r, "hello") == ANCM_RESULT_OK, "part within the length");
        CHECK(wait_wanted(&r, 60), "no second body_wanted");
        s = ancm_request_end_body(r.req);
        CHECK(s == ANCM_RESULT_BODY_LENGTH_MISMATCH, "early end_body gave %u", s);
        CHECK(wait_done(&r, 60), "no complete");
        CHECK(r.result == ANCM_RESULT_BODY_REFUSED, "complete %u: %s", r.result, r.message);
        finish(&r);
    }
    report("end_body before content_length bytes: BODY_LENGTH_MISMATCH, complete BODY_REFUSED", ok);
}

/* Exactly content_length bytes end the body: no further body_wanted, no end_body needed. */
static void test_body_exact(ancm_app *app) {
    bool ok = true;
    rq r;
    ancm_result s = start(app, &r, "POST", "/echo", NULL, 0, 5);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_wanted(&r, 60), "no body_wanted");
        CHECK(supply(&r, "hello") == ANCM_RESULT_OK, "the whole body");
        CHECK(wait_done(&r, 60), "no complete without end_body");
        CHECK(r.result == ANCM_RESULT_OK, "complete %u: %s", r.result, r.message);
        CHECK(r.status == 200 && !r.from_engine, "status %d from_engine %d", r.status, r.from_engine);
        CHECK(r.body_len == 5 && memcmp(r.body, "hello", 5) == 0, "echo %s", r.body);
        CHECK(r.wanted == 1, "%d body_wanted calls", r.wanted);
        CHECK(ancm_request_end_body(r.req) == ANCM_RESULT_OK, "a late end_body is harmless");
        finish(&r);
    }
    report("exactly content_length bytes end the body (end_body optional)", ok);
}

/* A zero-length supply is refused and fails the request, so it never waits for a body
 * nobody will ask for again. */
static void test_empty_supply(ancm_app *app) {
    bool ok = true;
    rq r;
    ancm_result s = start(app, &r, "POST", "/echo", NULL, 0, 5);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_wanted(&r, 60), "no body_wanted");
        s = ancm_request_supply_body(r.req, NULL, 0);
        CHECK(s == ANCM_RESULT_INVALID_ARGUMENT, "zero-length supply gave %u", s);
        /* Either asked again or failed: well before requestTimeout (2 minutes by default). */
        bool asked = wait_wanted(&r, 20);
        CHECK(asked || r.done, "neither asked again nor completed");
        CHECK(!asked, "asked again (the rule is: it fails)");
        CHECK(wait_done(&r, 0) && r.result == ANCM_RESULT_BODY_REFUSED, "complete %u: %s", r.result,
              r.message);
        finish(&r);
    }
    report("zero-length supply: INVALID_ARGUMENT and the request fails (BODY_REFUSED)", ok);
}

/* content_length is the framing; Content-Length / Transfer-Encoding in the list only repeat it. */
static void test_framing_headers(ancm_app *app) {
    struct {
        kv h[2];
        size_t n;
        int64_t content_length;
        bool accepted;
    } cases[] = {
        {{{"Content-Length", "5"}}, 1, 5, true},
        {{{"content-length", "5"}, {"Content-Length", "5"}}, 2, 5, true},
        {{{"Transfer-Encoding", "chunked"}}, 1, -1, true},
        {{{"Content-Length", "0"}}, 1, 0, true},
        {{{"Content-Length", "3"}}, 1, 5, false},
        {{{"Content-Length", "9"}}, 1, 5, false},
        {{{"Content-Length", "5"}}, 1, 0, false},
        {{{"Content-Length", "0"}}, 1, 5, false},
        {{{"Content-Length", "5"}}, 1, -1, false},
        {{{"Content-Length", "5"}, {"Content-Length", "6"}}, 2, 5, false},
        {{{"Content-Length", "five"}}, 1, 5, false},
        {{{"Transfer-Encoding", "chunked"}}, 1, 0, false},
        {{{"Transfer-Encoding", "chunked"}}, 1, 5, false},
        {{{"Transfer-Encoding", "gzip"}}, 1, -1, false},
        {{{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}, 2, -1, false},
        {{{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}, 2, 5, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool ok = true;
        rq r;
        ancm_result s = start(app, &r, "POST", "/echo", cases[i].h, cases[i].n, cases[i].content_length);
        if (!cases[i].accepted) {
            CHECK(s == ANCM_RESULT_FRAMING_HEADER, "start gave %u (%s)", s, ancm_result_message(s));
            if (s == ANCM_RESULT_OK) finish(&r);
        } else {
            CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
            if (s == ANCM_RESULT_OK) {
                if (cases[i].content_length != 0) {
                    CHECK(wait_wanted(&r, 60), "no body_wanted");
                    CHECK(supply(&r, "hello") == ANCM_RESULT_OK, "supply");
                    if (cases[i].content_length < 0) {
                        CHECK(wait_wanted(&r, 60), "no body_wanted for the end");
                        CHECK(ancm_request_end_body(r.req) == ANCM_RESULT_OK, "end_body");
                    }
                }
                CHECK(wait_done(&r, 60), "no complete");
                const char *want = cases[i].content_length != 0 ? "hello" : "";
                CHECK(r.result == ANCM_RESULT_OK && r.status == 200 && strcmp(r.body, want) == 0,
                      "result %u status %d body %s", r.result, r.status, r.body);
                finish(&r);
            }
        }
        char name[256];
        snprintf(name, sizeof name, "framing: %s: %s%s%s%s%s with content_length %lld is %s", cases[i].h[0].name,
                 cases[i].h[0].value, cases[i].n > 1 ? ", " : "", cases[i].n > 1 ? cases[i].h[1].name : "",
                 cases[i].n > 1 ? ": " : "", cases[i].n > 1 ? cases[i].h[1].value : "",
                 (long long)cases[i].content_length,
                 cases[i].accepted ? "forwarded" : "refused with FRAMING_HEADER");
        report(name, ok);
    }
}

/* Targets: origin-form only, the asterisk for OPTIONS only; nothing is translated. */
static void test_targets(ancm_app *app) {
    const char *refused[][2] = {
        {"GET", "foo"}, {"GET", "*"}, {"POST", "*"}, {"GET", "http://example.test/json"}, {"GET", ""},
        {"CONNECT", "example.test:443"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        bool ok = true;
        rq r;
        ancm_result s = start(app, &r, refused[i][0], refused[i][1], NULL, 0, 0);
        CHECK(s == ANCM_RESULT_INVALID_TARGET, "start gave %u (%s)", s, ancm_result_message(s));
        if (s == ANCM_RESULT_OK) {
            wait_done(&r, 60);
            printf("    forwarded anyway: status %d body %s\n", r.status, r.body);
            finish(&r);
        }
        char name[128];
        snprintf(name, sizeof name, "target: %s \"%s\" refused with INVALID_TARGET", refused[i][0], refused[i][1]);
        report(name, ok);
    }
    bool ok = true;
    rq r;
    ancm_result s = start(app, &r, "OPTIONS", "*", NULL, 0, 0);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_done(&r, 60), "no complete");
        /* examples/hello has no route for *: its 404 names the path it got. */
        CHECK(r.result == ANCM_RESULT_OK && r.status == 404 && strstr(r.body, "not found: *") != NULL,
              "result %u status %d body %s", r.result, r.status, r.body);
        finish(&r);
    }
    report("target: OPTIONS * reaches the backend as *", ok);
}

/* The engine's head rules (forward/admission.rs, forward/headers.rs) hold through the C ABI
 * too: CONNECT 501 and a second Host 400, both engine-made; a field with an underscore in its
 * name never reaches the app (CGI/WSGI apps read X_Forwarded_For as X-Forwarded-For). */
static void test_admission(ancm_app *app) {
    bool ok = true;
    rq r;
    ancm_result s = start(app, &r, "CONNECT", "/", NULL, 0, 0);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_done(&r, 60), "no complete");
        CHECK(r.status == 501 && r.from_engine, "status %d.%d from_engine %d", r.status, r.substatus, r.from_engine);
        finish(&r);
    }
    report("admission: CONNECT answered 501 by the engine", ok);

    ok = true;
    const kv second_host[] = {{"Host", "other.test"}};
    s = start(app, &r, "GET", "/json", second_host, 1, 0);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_done(&r, 60), "no complete");
        CHECK(r.status == 400 && r.from_engine, "status %d.%d from_engine %d", r.status, r.substatus, r.from_engine);
        CHECK(strstr(r.body, "\"pid\"") == NULL, "the app answered: %s", r.body);
        finish(&r);
    }
    report("admission: two Host fields answered 400 by the engine", ok);

    ok = true;
    const kv underscored[] = {{"X_Forwarded_For", "6.6.6.6"}, {"X_App_Key", "k"}};
    s = start(app, &r, "GET", "/json", underscored, 2, 0);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_done(&r, 60), "no complete");
        CHECK(r.status == 200 && !r.from_engine, "status %d from_engine %d", r.status, r.from_engine);
        CHECK(strstr(r.body, "\"headers\"") != NULL, "no header list: %s", r.body);
        CHECK(strstr(r.body, "6.6.6.6") == NULL && strstr(r.body, "X_App_Key") == NULL,
              "an underscored field reached the app: %s", r.body);
        CHECK(strstr(r.body, "127.0.0.1:40000") != NULL, "no X-Forwarded-For of the client: %s", r.body);
        finish(&r);
    }
    report("admission: fields with an underscore in the name are dropped", ok);
}

/* from_engine tells the engine's answers from the app's, also when both have substatus 0. */
static void test_from_engine(ancm_app *app) {
    bool ok = true;
    rq r;
    ancm_result s = start(app, &r, "GET", "/status?code=503", NULL, 0, 0);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_done(&r, 60), "no complete");
        CHECK(r.status == 503 && r.substatus == 0 && !r.from_engine, "status %d.%d from_engine %d", r.status,
              r.substatus, r.from_engine);
        finish(&r);
    }
    report("the app's own 503: from_engine false", ok);

    ok = true;
    CHECK(ancm_app_stop(app) == ANCM_RESULT_OK, "stop");
    s = start(app, &r, "GET", "/json", NULL, 0, 0);
    CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
    if (s == ANCM_RESULT_OK) {
        CHECK(wait_done(&r, 60), "no complete");
        CHECK(r.status == 503 && r.from_engine && r.result == ANCM_RESULT_OK, "status %d.%d from_engine %d", r.status,
              r.substatus, r.from_engine);
        finish(&r);
    }
    report("the engine's 503 after ancm_app_stop: from_engine true", ok);
}

static void test_startup_failure(void) {
    bool ok = true;
    ancm_config_builder *b = NULL;
    ancm_config *config = NULL;
    ancm_error *error = NULL;
    CHECK(ancm_config_builder_new((const uint8_t *)"t", 1, ANCM_DIALECT_ASP_NET_CORE, &b) == ANCM_RESULT_OK, "new");
    const char *k = "processPath", *v = "/nonexistent/ancm-abi-rules-no-such-program";
    CHECK(ancm_config_builder_set(b, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v), &error) ==
              ANCM_RESULT_OK,
          "set");
    CHECK(ancm_config_builder_build(b, &config, &error) == ANCM_RESULT_OK, "build");
    ancm_host_info host;
    memset(&host, 0, sizeof host);
    host.site_root = str("/tmp");
    ancm_app *app = NULL;
    CHECK(ancm_app_new(config, &host, &app) == ANCM_RESULT_OK, "app");
    ancm_config_free(config);
    if (app) {
        rq r;
        ancm_result s = start(app, &r, "GET", "/", NULL, 0, 0);
        CHECK(s == ANCM_RESULT_OK, "start: %s", ancm_result_message(s));
        if (s == ANCM_RESULT_OK) {
            CHECK(wait_done(&r, 120), "no complete");
            CHECK(r.status == 502 && r.substatus == 5 && r.from_engine, "status %d.%d from_engine %d", r.status,
                  r.substatus, r.from_engine);
            finish(&r);
        }
        ancm_app_free(app);
    }
    report("the engine's 502.5: from_engine true", ok);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <repo root>\n", argv[0]);
        return 100;
    }
    char script[1024], site[1024];
    snprintf(script, sizeof script, "%s/examples/hello/app.py", argv[1]);
    snprintf(site, sizeof site, "%s/examples/hello", argv[1]);
    ancm_config_builder *b = NULL;
    ancm_config *config = NULL;
    ancm_error *error = NULL;
    const char *keys[] = {"processPath", "arguments"}, *values[] = {"python3", script};
    if (ancm_config_builder_new((const uint8_t *)"abi_rules", 9, ANCM_DIALECT_ASP_NET_CORE, &b) != ANCM_RESULT_OK)
        return 100;
    for (int i = 0; i < 2; i++)
        if (ancm_config_builder_set(b, (const uint8_t *)keys[i], strlen(keys[i]), (const uint8_t *)values[i],
                                    strlen(values[i]), &error) != ANCM_RESULT_OK)
            return 100;
    if (ancm_config_builder_build(b, &config, &error) != ANCM_RESULT_OK) {
        fprintf(stderr, "%s\n", ancm_error_message(error));
        ancm_error_free(error);
        return 100;
    }
    ancm_host_info host;
    memset(&host, 0, sizeof host);
    host.site_root = str(site);
    host.app_path = str("/");
    ancm_app *app = NULL;
    ancm_result s = ancm_app_new(config, &host, &app);
    ancm_config_free(config);
    if (s != ANCM_RESULT_OK) return 100;

    test_body_too_long(app);
    test_body_too_short(app);
    test_body_exact(app);
    test_empty_supply(app);
    test_framing_headers(app);
    test_targets(app);
    test_admission(app);
    test_from_engine(app); /* stops the app: last */
    ancm_app_free(app);
    test_startup_failure();
    printf("abi_rules: %d failure(s)\n", failures);
    return failures > 100 ? 100 : failures;
}
