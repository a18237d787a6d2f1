/* The residual reader of valueagent's llama.cpp backend: an evaluation callback (`cb_eval` of
 * llama_context_params) that copies the output of chosen decoder blocks (`l_out-<il>`) of every token
 * of a batch into buffers owned by Python.
 *
 * The scheduler asks the callback about every graph node (~800 per decode step of a 24-block model);
 * a Python callback costs ~4 us a call, 14% of a 0.5B decode step on one core. This one costs a string
 * compare. Built once per machine with the system C compiler (valueagent/runtime/llama_reader.py).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct ggml_tensor;
const char *ggml_get_name(const struct ggml_tensor *tensor);
size_t ggml_nbytes(const struct ggml_tensor *tensor);
void ggml_backend_tensor_get(const struct ggml_tensor *tensor, void *data, size_t offset, size_t size);

#define VA_MAX_LAYERS 256

typedef struct {
    int32_t n_watch;                 /* how many blocks are watched */
    int32_t blocks[VA_MAX_LAYERS];   /* llama.cpp block index il of each (l_out-<il>) */
    float *bufs[VA_MAX_LAYERS];      /* destination of each, `cap` floats */
    int64_t cap;                     /* floats each buffer holds */
    int64_t got[VA_MAX_LAYERS];      /* floats written since the last reset (ubatches append) */
    int64_t overflow;                /* floats that did not fit (an error for the caller) */
} va_reader;

static int va_watched(const va_reader *r, const char *name) {
    if (strncmp(name, "l_out-", 6) != 0) return -1;
    char *end = NULL;
    long il = strtol(name + 6, &end, 10);
    if (end == name + 6 || *end != '\0') return -1; /* "l_out-5 (view)" and the like are not the block output */
    for (int32_t k = 0; k < r->n_watch; k++)
        if (r->blocks[k] == il) return k;
    return -1;
}

bool va_eval_cb(struct ggml_tensor *t, bool ask, void *user_data) {
    va_reader *r = (va_reader *)user_data;
    int k = va_watched(r, ggml_get_name(t));
    if (ask) return k >= 0;
    if (k < 0) return true;
    int64_t n = (int64_t)(ggml_nbytes(t) / sizeof(float));
    int64_t room = r->cap - r->got[k];
    int64_t take = n < room ? n : room;
    if (take > 0) ggml_backend_tensor_get(t, r->bufs[k] + r->got[k], 0, (size_t)take * sizeof(float));
    r->got[k] += take;
    r->overflow += n - take;
    return true;
}
