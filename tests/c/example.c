/* example.c: the smallest complete ancm-core host. It serves one GET through an app whose
 * settings are given key by key, and prints the response.
 * Build: cargo xtask c-package, then with ANCM=target/release/ancm (docs/c-api.md):
 *        cc -std=c11 -I$ANCM/include example.c $ANCM/lib/libancm.a -lpthread -ldl -lm -o example
 * Run:   ./example <site root holding app.py>  */
#include "ancm.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Per-request state: callbacks run on core threads, main() waits on the condition variable. */
struct exchange {
    pthread_mutex_t mu;
    pthread_cond_t done_cv;
    int done;
    ancm_result result;
    ancm_request *req;
};

static ancm_slice text(const char *s) {
    ancm_slice r = {(const uint8_t *)s, strlen(s)};
    return r;
}

/* A GET has no body (content_length 0), so the core never asks for one. */
static void body_wanted(void *ud) { ancm_request_end_body(((struct exchange *)ud)->req); }

static void response_head(void *ud, const ancm_response_head *head) {
    (void)ud;
    printf("HTTP %u.%u %.*s\n", head->status, head->substatus, (int)head->reason.len,
           (const char *)head->reason.ptr);
}

/* A real host writes the chunk asynchronously and acknowledges it on completion. */
static void response_body(void *ud, const uint8_t *data, size_t len, bool flush) {
    (void)flush;
    fwrite(data, 1, len, stdout);
    ancm_request_ack_write(((struct exchange *)ud)->req);
}

static void complete(void *ud, ancm_result result, const uint8_t *msg, size_t len) {
    struct exchange *x = ud;
    if (result != ANCM_RESULT_OK) fprintf(stderr, "request failed: %.*s\n", (int)len, (const char *)msg);
    pthread_mutex_lock(&x->mu);
    x->result = result;
    x->done = 1;
    pthread_cond_signal(&x->done_cv);
    pthread_mutex_unlock(&x->mu);
}

#define SET(b, key, value) \
    ancm_config_builder_set(b, (const uint8_t *)key, strlen(key), (const uint8_t *)value, strlen(value), &error)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <site root>\n", argv[0]);
        return 2;
    }
    ancm_config_builder *builder = NULL;
    ancm_config *config = NULL;
    ancm_error *error = NULL;
    if (ancm_config_builder_new((const uint8_t *)"example", 7, ANCM_DIALECT_ASP_NET_CORE, &builder) != ANCM_RESULT_OK)
        return 1;
    if (SET(builder, "processPath", "python3") != ANCM_RESULT_OK || SET(builder, "arguments", "app.py") != ANCM_RESULT_OK ||
        ancm_config_builder_build(builder, &config, &error) != ANCM_RESULT_OK) {
        /* (a failed set leaves the builder to free; build always consumes it) */
        fprintf(stderr, "configuration: %s\n", ancm_error_message(error));
        ancm_error_free(error);
        return 1;
    }

    ancm_host_info host = {text(argv[1]), text("/"), text(""), 0, false};
    ancm_app *app = NULL;
    ancm_result r = ancm_app_new(config, &host, &app);
    ancm_config_free(config); /* the app keeps its own copy */
    if (r != ANCM_RESULT_OK) {
        fprintf(stderr, "ancm_app_new: %s\n", ancm_result_message(r));
        return 1;
    }

    struct exchange x = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, ANCM_RESULT_OK, NULL};
    ancm_header headers[] = {{text("Host"), text("localhost")}};
    ancm_request_head head = {0};
    head.method = text("GET");
    head.target = text("/json");
    head.headers = headers;
    head.header_count = 1;
    head.client_address = text("127.0.0.1");
    head.client_port = 40000;
    const ancm_callbacks callbacks = {body_wanted, response_head, response_body, complete, NULL};
    r = ancm_request_start(app, &head, &callbacks, &x, &x.req); /* x.req is set before any callback */
    if (r == ANCM_RESULT_OK) {
        pthread_mutex_lock(&x.mu);
        while (!x.done) pthread_cond_wait(&x.done_cv, &x.mu);
        pthread_mutex_unlock(&x.mu);
        ancm_request_free(x.req);
        r = x.result;
    }

    ancm_app_stop(app); /* graceful: blocks until the app's process has exited */
    ancm_app_free(app);
    return r == ANCM_RESULT_OK ? 0 : 1;
}
