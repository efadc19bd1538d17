/*
 * Bench report plumbing: every table line goes to stdout and to the --md file; progress goes
 * to stderr only when it is a terminal; charts are small hand-written SVG line plots (no C
 * library does this better than forty lines of text output).
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/bench.h"

static FILE *g_md;

void bench_report_open(const char *md_path)
{
    g_md = md_path ? fopen(md_path, "w") : NULL;
    if (md_path && !g_md)
        fprintf(stderr, "mtinfer bench: cannot write %s; the report goes to stdout only\n",
                md_path);
}

void bench_report_close(void)
{
    if (g_md) fclose(g_md);
    g_md = NULL;
}

void bench_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (g_md) {
        va_start(ap, fmt);
        vfprintf(g_md, fmt, ap);
        va_end(ap);
    }
    fflush(stdout);
}

void bench_progress(const struct bench_options *o, const char *section, const char *step,
                    double seconds_left)
{
    if (o->progress)
        fprintf(stderr, "\r\033[K[bench] %s: %s (about %.0f s left in this section)", section, step,
                seconds_left);
}

void bench_progress_done(const struct bench_options *o)
{
    if (o->progress) fprintf(stderr, "\r\033[K");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct bench_stat bench_summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    struct bench_stat s = {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v[0], v[n - 1]};
    return s;
}

cJSON *bench_stat_json(struct bench_stat s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "median", s.median);
    cJSON_AddNumberToObject(o, "min", s.min);
    cJSON_AddNumberToObject(o, "max", s.max);
    return o;
}

/* ---- SVG ---------------------------------------------------------------------------------- */

static const char *k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                 "#9467bd", "#8c564b", "#17becf", "#7f7f7f"};

int bench_svg_chart(const char *dir, const char *name, const char *title, const char *xlabel,
                    const char *ylabel, const struct svg_series *series, int n_series)
{
    double x0 = INFINITY, x1 = -INFINITY, y1 = 0;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < series[s].n; i++) {
            if (series[s].x[i] <= 0 || !isfinite(series[s].y[i])) continue;
            x0 = fmin(x0, series[s].x[i]);
            x1 = fmax(x1, series[s].x[i]);
            y1 = fmax(y1, series[s].y[i]);
        }
    if (!(x1 >= x0) || y1 <= 0) return -1;
    if (x1 == x0) x1 = x0 * 2;
    mkdir(dir, 0755);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.svg", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    const double W = 720, H = 420, L = 90, R = 200, T = 40, B = 60;
    const double pw = W - L - R, ph = H - T - B;
    double lx0 = log2(x0), lx1 = log2(x1);
    y1 *= 1.1;
#define PX(x) (L + (log2(x) - lx0) / (lx1 - lx0) * pw)
#define PY(y) (T + ph - (y) / y1 * ph)
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
            "height=\"100%%\" fill=\"white\"/>\n<text x=\"%.0f\" y=\"24\" font-size=\"15\">%s"
            "</text>\n",
            W, H, L, title);
    for (int i = 0; i <= 5; i++) { /* y grid */
        double y = y1 * i / 5;
        char label[32];
        if (y >= 1e6)
            snprintf(label, sizeof label, "%.2fM", y / 1e6);
        else if (y >= 1e4)
            snprintf(label, sizeof label, "%.0fk", y / 1e3);
        else
            snprintf(label, sizeof label, "%.3g", y);
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                L, L + pw, PY(y), PY(y), L - 6, PY(y) + 4, label);
    }
    for (double x = pow(2, floor(lx0)); x <= x1 * 1.0001; x *= 2) { /* x ticks */
        if (x < x0 * 0.999) continue;
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                PX(x), PX(x), T, T + ph, PX(x), T + ph + 16, x);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n"
            "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
            L + pw / 2, H - 18, xlabel, T + ph / 2, ylabel);
    for (int s = 0; s < n_series; s++) {
        const char *color = k_colors[s % 8];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (int i = 0; i < series[s].n; i++)
            if (series[s].x[i] > 0 && isfinite(series[s].y[i]))
                fprintf(f, "%.1f,%.1f ", PX(series[s].x[i]), PY(series[s].y[i]));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < series[s].n; i++)
            if (series[s].x[i] > 0 && isfinite(series[s].y[i]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                        PX(series[s].x[i]), PY(series[s].y[i]), color);
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"3\" fill=\"%s\"/>"
                "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                L + pw + 16, T + 10 + 18.0 * s, color, L + pw + 34, T + 15 + 18.0 * s,
                series[s].label);
    }
#undef PX
#undef PY
    fprintf(f, "</svg>\n");
    fclose(f);
    return 0;
}
