/* sigchld.c: the engine reaps the processes it starts, and copes with a host that sets SIGCHLD to
 * SIG_IGN (docs/c-api.md, "Child processes"). Usage: sigchld <repo root> default|ignore.
 * The app's process is killed from outside; the engine must notice (process count 0), leave no
 * zombie and start a new process for the next request. Exit code: the number of failures. */
#define _POSIX_C_SOURCE 200809L

#include "ancm.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

static void report(const char *name, bool ok) {
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
    fflush(stdout);
    if (!ok) failures++;
}

static ancm_slice str(const char *s) {
    ancm_slice r = {(const uint8_t *)s, strlen(s)};
    return r;
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ancm_request *req;
    bool done;
    ancm_result result;
    int status;
    char body[256];
    size_t len;
} rq;

static void on_wanted(void *ud) { ancm_request_end_body(((rq *)ud)->req); }
static void on_head(void *ud, const ancm_response_head *h) { ((rq *)ud)->status = h->status; }
static void on_body(void *ud, const uint8_t *d, size_t n, bool flush) {
    rq *r = ud;
    (void)flush;
    size_t room = sizeof r->body - 1 - r->len;
    if (n > room) n = room;
    memcpy(r->body + r->len, d, n);
    r->len += n;
    r->body[r->len] = 0;
    ancm_request_ack_write(r->req);
}
static void on_complete(void *ud, ancm_result result, const uint8_t *m, size_t n) {
    rq *r = ud;
    (void)m;
    (void)n;
    pthread_mutex_lock(&r->mu);
    r->result = result;
    r->done = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* GET /pid: the backend's process id, or 0 on failure. */
static long get_pid(ancm_app *app) {
    rq r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    ancm_header h[] = {{str("Host"), str("localhost")}};
    ancm_request_head head;
    memset(&head, 0, sizeof head);
    head.method = str("GET");
    head.target = str("/pid");
    head.headers = h;
    head.header_count = 1;
    head.client_address = str("127.0.0.1");
    const ancm_callbacks cb = {on_wanted, on_head, on_body, on_complete, NULL};
    long pid = 0;
    if (ancm_request_start(app, &head, &cb, &r, &r.req) == ANCM_RESULT_OK) {
        pthread_mutex_lock(&r.mu);
        while (!r.done) pthread_cond_wait(&r.cv, &r.mu);
        pthread_mutex_unlock(&r.mu);
        if (r.result == ANCM_RESULT_OK && r.status == 200) pid = strtol(r.body, NULL, 10);
        ancm_request_free(r.req);
    }
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    return pid;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Whether `pid` is a zombie child of ours ('Z' in /proc/<pid>/stat). */
static bool is_zombie(long pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close = strrchr(buf, ')');
    return close && close[1] == ' ' && close[2] == 'Z';
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <repo root> default|ignore\n", argv[0]);
        return 100;
    }
    bool ignore = strcmp(argv[2], "ignore") == 0;
    if (ignore) signal(SIGCHLD, SIG_IGN);

    char script[1024], site[1024];
    snprintf(script, sizeof script, "%s/examples/hello/app.py", argv[1]);
    snprintf(site, sizeof site, "%s/examples/hello", argv[1]);
    ancm_config_builder *b = NULL;
    ancm_config *config = NULL;
    ancm_error *error = NULL;
    const char *keys[] = {"processPath", "arguments"}, *values[] = {"python3", script};
    if (ancm_config_builder_new((const uint8_t *)"sigchld", 7, ANCM_DIALECT_ASP_NET_CORE, &b) != ANCM_RESULT_OK) return 100;
    for (int i = 0; i < 2; i++)
        if (ancm_config_builder_set(b, (const uint8_t *)keys[i], strlen(keys[i]), (const uint8_t *)values[i],
                                    strlen(values[i]), &error) != ANCM_RESULT_OK)
            return 100;
    if (ancm_config_builder_build(b, &config, &error) != ANCM_RESULT_OK) return 100;
    ancm_host_info host;
    memset(&host, 0, sizeof host);
    host.site_root = str(site);
    ancm_app *app = NULL;
    ancm_result s = ancm_app_new(config, &host, &app);
    ancm_config_free(config);
    if (s != ANCM_RESULT_OK) return 100;

    long first = get_pid(app);
    report("a first request starts the app", first > 0);
    if (first > 0) {
        kill((pid_t)first, SIGKILL);
        /* The engine notices the exit: generous bound (a shared, slow machine). */
        bool gone = false;
        for (int i = 0; i < 600 && !gone; i++) {
            ancm_app_status st;
            gone = ancm_app_get_status(app, &st) == ANCM_RESULT_OK && st.process_count == 0;
            if (!gone) sleep_ms(100);
        }
        report("the engine notices a killed process (process count 0)", gone);
        report("the killed process is reaped (no zombie left)", gone && !is_zombie(first));
        long second = get_pid(app);
        report("the next request starts a new process", second > 0 && second != first);
    }
    struct sigaction now;
    sigaction(SIGCHLD, NULL, &now);
    if (ignore) {
        /* Documented, not chosen: once a child was reaped by the kernel, tokio's orphan reaper
         * installs its own SIGCHLD handler in place of SIG_IGN (docs/c-api.md). */
        printf("    SIGCHLD is %s now\n", now.sa_handler == SIG_IGN ? "still SIG_IGN" : "the runtime's handler");
    } else {
        report("SIGCHLD is still SIG_DFL: the engine installs no handler of its own",
               now.sa_handler == SIG_DFL);
    }
    ancm_app_stop(app);
    ancm_app_free(app);
    printf("sigchld (%s): %d failure(s)\n", argv[2], failures);
    return failures;
}
