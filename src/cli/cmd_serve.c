// cterp serve: the live explorer over HTTP (libmicrohttpd): the explorer page at /, the JSON API
// at /api/ (cterp_explore_handle: every request's work is done there, not here), and the static
// dashboard under /dash/ when corpus statistics are given (--features) or computed (--data).
// Here only the HTTP plumbing: bodies gathered up to a limit, routes, static files, shutdown.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli/cli.h"
#include "core/file.h"
#include "core/platform.h"
#include "cterp/dashboard.h"
#include "cterp/explore.h"

static void usage(FILE *f) {
    fprintf(
        f, "usage: cterp serve --model M.gguf --sae DIR [--features FEATS | --data D] [--port P]\n"
           "                   [--host 127.0.0.1] [--context-size N] [--max-new N] [--hook H]\n"
           "  the live explorer: a prompt page (tokens, their top latents, the next-token\n"
           "  distribution; steer or ablate a latent and see the continuation and the per-token\n"
           "  change in loss) at http://HOST:PORT/, its JSON API under /api/ (docs/features.md),\n"
           "  and the dashboard under /dash/ when corpus statistics are at hand\n"
           "  --features FEATS   the output of cterp features (the dashboard's statistics)\n"
           "  --data D           or compute them here over D (`cterp features --help` options)\n"
           "  --port P           TCP port (8765; 0: any free port, printed)\n"
           "  --host A           address to bind (127.0.0.1; anything else serves the network)\n"
           "  --context-size N   longest prompt + continuation in tokens (the SAE's context size)\n"
           "  --max-new N        most tokens a steer request may generate (128)\n"
           "Stops on SIGINT/SIGTERM.\n");
}

#ifndef CTERP_HAVE_MHD

int cmd_serve(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
    fprintf(stderr, "cterp serve: this cterp was built without libmicrohttpd (Debian: apt-get "
                    "install libmicrohttpd-dev, or scripts/deps.sh; then rebuild)\n");
    return 1;
}

#else
#include <microhttpd.h>

#include "serve_page.h" // serve_page[]: src/cli/serve.html, embedded by CMake

typedef struct {
    cterp_explore *x;
    const char *dash; // the dashboard's directory, or NULL
    int loopback;     // bound to a loopback address: only loopback Host headers
} server;

typedef struct {
    char *body;
    size_t len, cap;
    int too_big;
} request;

// The pages load nothing from elsewhere: their inline script and style, and fetches to this server
static const char *CSP =
    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned code, const char *type,
                                char *data, size_t len, int owned, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, data, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned) free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (!strncmp(type, "text/html", 9)) MHD_add_response_header(r, "Content-Security-Policy", CSP);
    enum MHD_Result ok = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return MHD_NO;
    return send_buf(c, code, "application/json", s, strlen(s), 1,
                    code == MHD_HTTP_METHOD_NOT_ALLOWED ? "GET, HEAD" : NULL);
}

// /dash/index.html, /dash/training.html, /dash/f/I.html: exactly what cterp dashboard writes
static enum MHD_Result send_dash(struct MHD_Connection *c, const server *sv, const char *rel) {
    if (!sv->dash)
        return send_error(c, MHD_HTTP_NOT_FOUND,
                          "no dashboard: start cterp serve with --features FEATS or --data D");
    if (!*rel) rel = "index.html";
    int ok = !strcmp(rel, "index.html") || !strcmp(rel, "training.html");
    if (!ok && !strncmp(rel, "f/", 2)) { // f/<digits>.html, nothing else: no path games
        const char *p = rel + 2, *q = p;
        while (*q >= '0' && *q <= '9') q++;
        ok = q > p && q - p < 20 && !strcmp(q, ".html");
    }
    char *path = ok ? file_join(sv->dash, rel) : NULL;
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return send_error(c, MHD_HTTP_NOT_FOUND, "no dashboard page /dash/%.200s", rel);
    }
    struct MHD_Response *r = MHD_create_response_from_fd((size_t)st.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(r, "Content-Security-Policy", CSP);
    enum MHD_Result res = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return res;
}

// With a loopback bind, a Host other than a loopback name is a page elsewhere reaching in
// (DNS rebinding): refused.
static int host_ok(struct MHD_Connection *c) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (!h) return 1; // HTTP/1.0
    size_t n = strlen(h);
    const char *colon = h[0] == '[' ? strchr(h, ']') : strchr(h, ':');
    if (h[0] == '[')
        n = colon ? (size_t)(colon - h + 1) : n;
    else if (colon)
        n = (size_t)(colon - h);
    char ip[16]; // an IPv4 literal 127.x.x.x, not a name that starts with "127." (a domain)
    struct in_addr a;
    if (n < sizeof ip) memcpy(ip, h, n), ip[n] = 0;
    return (n == 9 && !strncmp(h, "localhost", 9)) || (n == 5 && !strncmp(h, "[::1]", 5)) ||
           (n < sizeof ip && inet_pton(AF_INET, ip, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    server *sv = cls;
    request *r = *con_cls;
    if (!r) { // headers only so far
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > CTERP_EXPLORE_MAX_BODY) {
            r->too_big = 1; // answered now: MHD then closes the connection, the body unread
            return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
                              "request body of %.20s bytes: the limit is %d", cl,
                              CTERP_EXPLORE_MAX_BODY);
        }
        return MHD_YES;
    }
    if (*upload_size) { // a piece of the body
        if (!r->too_big && r->len + *upload_size > CTERP_EXPLORE_MAX_BODY) {
            r->too_big = 1; // chunked, no length given: dropped from here on
            free(r->body), r->body = NULL, r->len = r->cap = 0;
        }
        if (!r->too_big) {
            if (r->len + *upload_size > r->cap) { // grown as it comes: most bodies are small
                size_t cap = r->cap ? r->cap : 1024;
                while (cap < r->len + *upload_size) cap *= 2;
                char *b = realloc(r->body, cap);
                if (!b) return MHD_NO;
                r->body = b, r->cap = cap;
            }
            memcpy(r->body + r->len, upload, *upload_size);
            r->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_big)
        return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body over the limit of %d bytes",
                          CTERP_EXPLORE_MAX_BODY);
    if (sv->loopback && !host_ok(c))
        return send_error(c, MHD_HTTP_FORBIDDEN,
                          "Host header not a loopback name: this server answers only pages of "
                          "127.0.0.1 / localhost");
    if (!strncmp(url, "/api/", 5)) {
        char *out = NULL;
        int code = cterp_explore_handle(sv->x, method, url + 5, r->body, r->len, &out);
        if (!out) return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return send_buf(c, (unsigned)code, "application/json", out, strlen(out), 1,
                        code != 405                 ? NULL
                        : !strcmp(url, "/api/info") ? "GET"
                                                    : "POST");
    }
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "%s takes GET", url);
        return send_buf(c, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)serve_page,
                        sizeof serve_page - 1, 0, NULL);
    }
    if (!strcmp(url, "/dash") || !strncmp(url, "/dash/", 6)) {
        if (!get) return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "%.200s takes GET", url);
        if (!strcmp(url, "/dash")) { // relative links in the pages need the slash
            struct MHD_Response *rd =
                MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
            if (!rd) return MHD_NO;
            MHD_add_response_header(rd, MHD_HTTP_HEADER_LOCATION, "/dash/");
            enum MHD_Result res = MHD_queue_response(c, MHD_HTTP_MOVED_PERMANENTLY, rd);
            MHD_destroy_response(rd);
            return res;
        }
        return send_dash(c, sv, url + 6);
    }
    return send_error(c, MHD_HTTP_NOT_FOUND,
                      "no page %.200s (the explorer is at /, the API under /api/)", url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode why) {
    request *r = *con_cls;
    if (r) free(r->body), free(r);
    *con_cls = NULL;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    return remove(path);
}

int cmd_serve(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    mo.store.windows.context_size = 0; // 0: the SAE's
    cterp_features_config fc;
    cterp_features_config_default(&fc);
    const char *sae_dir = NULL, *feats = NULL, *host = "127.0.0.1";
    long port = 8765, max_new = 128;
    // a server's memory should follow its load, not its peak: main kept freed memory for the
    // trainer's repeated big buffers; give it back here
    platform_default_heap();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        int mf = v ? cli_model_flag(&mo, a, v) : 0,
            ff = mf == 0 && v ? cli_features_flag(&fc, "serve", a, v) : 0;
        char *end = NULL;
        if (mf < 0) {
            fprintf(stderr, "cterp serve: %s: bad value '%s'\n", a, v);
            return 2;
        } else if (ff < 0) {
            return 2;
        } else if (mf > 0 || ff > 0) {
            i++;
        } else if (v && !strcmp(a, "--sae")) {
            sae_dir = argv[++i];
        } else if (v && !strcmp(a, "--features")) {
            feats = argv[++i];
        } else if (v && !strcmp(a, "--host")) {
            host = argv[++i];
        } else if (v && (!strcmp(a, "--port") || !strcmp(a, "--max-new"))) {
            long x = strtol(v, &end, 10);
            int is_port = !strcmp(a, "--port");
            if (end == v || *end || x < 0 || x > (is_port ? 65535 : 100000)) {
                fprintf(stderr, "cterp serve: %s: expected an integer in [0, %d], got '%s'\n", a,
                        is_port ? 65535 : 100000, v);
                return 2;
            }
            *(is_port ? &port : &max_new) = x;
            i++;
        } else {
            fprintf(stderr, "cterp serve: unknown option or missing value: %s\n", a);
            return usage(stderr), 2;
        }
    }
    if (!mo.model || !sae_dir || (feats && mo.data)) {
        fprintf(stderr, "cterp serve: --model and --sae, and at most one of --features, --data\n");
        return usage(stderr), 2;
    }
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4), memset(&a6, 0, sizeof a6);
    const int v6 = strchr(host, ':') != NULL;
    if (v6 ? inet_pton(AF_INET6, host, &a6.sin6_addr) != 1
           : inet_pton(AF_INET, host, &a4.sin_addr) != 1) {
        fprintf(stderr, "cterp serve: --host: not an IPv4 or IPv6 address: '%s'\n", host);
        return 2;
    }
    a4.sin_family = AF_INET, a4.sin_port = htons((uint16_t)port);
    a6.sin6_family = AF_INET6, a6.sin6_port = htons((uint16_t)port);
    const int loopback =
        v6 ? IN6_IS_ADDR_LOOPBACK(&a6.sin6_addr) : (ntohl(a4.sin_addr.s_addr) >> 24) == 127;

    cterp_sae *sae = NULL;
    cterp_model *m = NULL;
    cterp_features *F = NULL;
    cterp_explore *x = NULL;
    struct MHD_Daemon *d = NULL;
    char dash[4096] = "/tmp/cterp-serve-XXXXXX", *metrics = NULL;
    int have_dash = 0, rc = 1;
    char hook[256] = "";
    if (cterp_sae_load(sae_dir, &sae) || cterp_model_open(&m, mo.model)) goto fail;
    if ((mo.hook || mo.component) && cli_model_hook(&mo, hook, sizeof hook)) goto fail;
    if (feats && cterp_features_load(feats, &F)) goto fail;
    if (mo.data) {
        if ((rc = cli_features_run("serve", &mo, sae_dir, &fc, &F))) goto done;
        rc = 1;
    }
    cterp_explore_opts xo = {hook[0] ? hook : NULL, mo.store.windows.context_size, (int)max_new, F};
    if (cterp_explore_create(&x, m, sae, &xo)) goto fail;
    if (F) { // the dashboard, written once into a private directory and served from there
        const char *tmpdir = getenv("TMPDIR");
        char *tmpl = file_join(tmpdir && *tmpdir ? tmpdir : "/tmp", "cterp-serve-XXXXXX");
        if (!tmpl || strlen(tmpl) >= sizeof dash) {
            free(tmpl), tmpl = NULL;
        }
        if (tmpl) snprintf(dash, sizeof dash, "%s", tmpl);
        free(tmpl);
        if (!mkdtemp(dash)) {
            fprintf(stderr, "cterp serve: cannot make a directory %s: %s\n", dash, strerror(errno));
            goto done;
        }
        have_dash = 1;
        cterp_dashboard_opts dop = {0};
        metrics = file_join(sae_dir, "metrics.jsonl");
        if (metrics && file_exists(metrics)) dop.metrics = metrics;
        double t0 = time_now();
        if (cterp_dashboard_write(F, dash, &dop)) goto fail;
        fprintf(stderr, "cterp serve: dashboard of %lld latents in %.1f s\n", (long long)F->d_sae,
                time_now() - t0);
    }
    // the signals are taken by sigwait below: blocked here, before MHD starts its threads
    sigset_t sigs;
    sigemptyset(&sigs), sigaddset(&sigs, SIGINT), sigaddset(&sigs, SIGTERM),
        sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    server sv = {x, have_dash ? dash : NULL, loopback};
    // a pool of threads: static pages and errors are answered while one request runs the model
    // (model work is serialised inside cterp_explore_handle)
    d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0),
                         (uint16_t)port, NULL, NULL, on_request, &sv, MHD_OPTION_SOCK_ADDR,
                         v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)4, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)256, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "cterp serve: cannot listen on %s port %ld (in use? try --port 0)\n", host,
                port);
        goto done;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    const unsigned bound = di ? di->port : (unsigned)port;
    if (!loopback)
        fprintf(stderr,
                "cterp serve: warning: %s is not a loopback address: anyone who reaches "
                "it can run the model\n",
                host);
    printf("cterp serve: http://%s%s%s:%u/ (%lld latents at %s, context %d%s)\n", v6 ? "[" : "",
           host, v6 ? "]" : "", bound, (long long)sae->d_sae, hook[0] ? hook : sae->meta.hook_name,
           cterp_explore_context(x), have_dash ? ", dashboard at /dash/" : "");
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "cterp serve: stopping (signal %d)\n", sig);
    rc = 0;
    goto done;
fail:
    cli_error("serve");
done:
    if (d) MHD_stop_daemon(d);
    if (have_dash && nftw(dash, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "cterp serve: could not remove %s\n", dash);
    free(metrics);
    cterp_explore_free(x);
    cterp_features_free(F);
    cterp_sae_free(sae);
    cterp_model_free(m);
    return rc;
}
#endif
