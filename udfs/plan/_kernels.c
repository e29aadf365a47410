/* Ahead-of-time compiled tree-ensemble kernels for udfs scoring plans (DESIGN.md 2b).
 *
 * A Forest holds every tree of a model in one sibling-adjacent node array (a node's right child is
 * left + 1; a leaf is its own left child with threshold +inf, so walking past it changes nothing).
 * Forest.run(X, out) adds, tree by tree in model order, each tree's leaf values to out, starting from
 * the model's initial raw score, the same summation order scikit-learn uses, so results are
 * bit-identical. Rows are processed in blocks and each tree is walked level by level over the whole
 * block: the rows' dependency chains are independent, so the CPU overlaps their memory loads.
 *
 * Two node kinds:
 *  - "f32": scikit-learn's Tree (DecisionTree, forests, GradientBoosting). X is cast to float32 and
 *    compared with float32 thresholds already lowered to the largest float32 <= the float64 threshold,
 *    which is the same test as scikit-learn's float32-vs-float64 compare.
 *  - "f64": HistGradientBoosting predictors: float64 compare, NaN routing, categorical bitsets.
 *    LightGBM trees use it too (float64 `x <= threshold`); a node may also send values in
 *    [-1e-35f, 1e-35f] its missing-value way (LightGBM's missing type Zero, bit ZERO_MISSING).
 *
 * Options: acc32 rounds the running sum to float32 after every addition (XGBoost accumulates its
 * margin in float32: (float)((double)a + (double)b) is the float32 sum, as double has more than
 * 2 * 24 + 2 bits); allow_inf lets a float32 model take infinities (XGBoost compares them).
 *
 * Only the buffer protocol is used (no numpy headers). The GIL is released around the loops; nothing
 * here starts threads. Build without -ffast-math and with -ffp-contract=off: a fused multiply-add or
 * reassociation would change the last bit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 256

/* Flags packed in Node32.mgl: bit 0 missing values go left; bits 1 and 2 the left and right
 * children are leaves (derived in Forest_init, used by the deep-tree walk). */
#define MGL 1
#define LEFT_LEAF 2
/* Node64 only: values within +-ZERO_THRESHOLD (and NaN) go the missing-value way (LightGBM's
 * kZeroThreshold, 1e-35f, compared as a double). */
#define ZERO_MISSING 2
#define ZERO_THRESHOLD ((double)1e-35f)


typedef struct {
    float thr;
    int32_t feat;
    int32_t left;
    int32_t mgl; /* flags: missing values go left, children are leaves (see MGL) */
} Node32;

typedef struct {
    double thr;
    int32_t feat;
    int32_t left;
    int32_t mgl;
    int32_t bitset; /* index into cat_bitsets for a categorical split, -1 otherwise */
} Node64;

typedef struct {
    PyObject_HEAD
    int kind;             /* 32 or 64 */
    Py_ssize_t n_features;
    Py_ssize_t n_outputs; /* K: width of out */
    Py_ssize_t n_trees;
    Py_ssize_t n_nodes;
    Py_ssize_t width;     /* leaf value width w; tree t writes out[:, col[t] : col[t] + w] */
    int32_t *root;
    int32_t *depth;
    int32_t *col;
    int32_t *has_cat;     /* f64: the tree has a categorical split */
    Node32 *nodes32;
    Node64 *nodes64;
    double *values;       /* n_nodes * width */
    double *init;         /* K values, or NULL: the first tree assigns instead of adding */
    double divisor;       /* 0: none; else out /= divisor at the end (forest averaging) */
    int allow_nan;
    int allow_inf;        /* f32: infinities (also float32 overflow) are compared, not refused */
    int acc32;            /* round the running sum to float32 after each addition */
    int has_zero;         /* f64: some node has ZERO_MISSING */
    uint32_t *cat_bitsets;   /* n_bitsets * 8 */
    Py_ssize_t n_bitsets;
    uint32_t *known_bitsets; /* n_features * 8 */
} Forest;

/* ---------------------------------------------------------------- buffers */

/* Reads a 1-D C-contiguous buffer with the given struct format char and item size. */
static int get_vec(PyObject *obj, const char *name, char fmt, Py_ssize_t itemsize, Py_buffer *view,
                   Py_ssize_t *n) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    int ok = view->itemsize == itemsize && f[1] == '\0' &&
             (f[0] == fmt || (fmt == 'i' && itemsize == 4 && f[0] == 'l' && sizeof(long) == 4) ||
              (fmt == 'I' && itemsize == 4 && f[0] == 'L' && sizeof(long) == 4));
    if (!ok || view->ndim > 1) {
        PyErr_Format(PyExc_TypeError, "Forest: %s must be a 1-D array of format '%c' (got '%s')",
                     name, fmt, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    *n = view->len / itemsize;
    return 0;
}

/* Copies a 1-D buffer into newly allocated memory (the Forest owns its data). */
static void *copy_vec(PyObject *obj, const char *name, char fmt, Py_ssize_t itemsize,
                      Py_ssize_t *n) {
    Py_buffer view;
    if (get_vec(obj, name, fmt, itemsize, &view, n) < 0) return NULL;
    void *mem = PyMem_RawMalloc(view.len > 0 ? (size_t)view.len : 1);
    if (mem == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(mem, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return mem;
}

static int expect_len(const char *name, Py_ssize_t got, Py_ssize_t want) {
    if (got != want) {
        PyErr_Format(PyExc_ValueError, "Forest: %s has %zd items, expected %zd", name, got, want);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- Forest object */

static void Forest_dealloc(Forest *self) {
    PyMem_RawFree(self->root);
    PyMem_RawFree(self->depth);
    PyMem_RawFree(self->col);
    PyMem_RawFree(self->has_cat);
    PyMem_RawFree(self->nodes32);
    PyMem_RawFree(self->nodes64);
    PyMem_RawFree(self->values);
    PyMem_RawFree(self->init);
    PyMem_RawFree(self->cat_bitsets);
    PyMem_RawFree(self->known_bitsets);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Checks every index a walk can follow, so a corrupt plan cannot read out of bounds. */
static int validate_nodes(Forest *s, const int32_t *feat, const int32_t *left,
                          const int32_t *bitset) {
    Py_ssize_t n = s->n_nodes;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t l = left[i];
        if (!(l == i || (l >= 0 && (Py_ssize_t)l + 1 < n))) {
            PyErr_Format(PyExc_ValueError, "Forest: node %zd has an invalid child %d", i, l);
            return -1;
        }
        if (feat[i] < 0 || feat[i] >= s->n_features) {
            PyErr_Format(PyExc_ValueError, "Forest: node %zd has an invalid feature %d", i, feat[i]);
            return -1;
        }
        if (bitset != NULL && bitset[i] >= 0 && bitset[i] >= s->n_bitsets) {
            PyErr_Format(PyExc_ValueError, "Forest: node %zd has an invalid bitset %d", i, bitset[i]);
            return -1;
        }
    }
    for (Py_ssize_t t = 0; t < s->n_trees; t++) {
        if (s->root[t] < 0 || s->root[t] >= n || s->depth[t] < 0 || s->col[t] < 0 ||
            (Py_ssize_t)s->col[t] + s->width > s->n_outputs) {
            PyErr_Format(PyExc_ValueError, "Forest: tree %zd has an invalid root/depth/column", t);
            return -1;
        }
    }
    return 0;
}

static int Forest_init(Forest *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"kind",       "n_features",  "n_outputs",   "width",     "root",
                             "depth",      "col",         "feature",     "threshold", "left",
                             "missing_left", "value",     "init",        "divisor",   "allow_nan",
                             "bitset",     "cat_bitsets", "known_bitsets", "allow_inf", "acc32", NULL};
    int kind, allow_nan, allow_inf = 0, acc32 = 0;
    Py_ssize_t n_features, n_outputs, width;
    double divisor;
    PyObject *o_root, *o_depth, *o_col, *o_feat, *o_thr, *o_left, *o_mgl, *o_value, *o_init;
    PyObject *o_bitset = Py_None, *o_cat = Py_None, *o_known = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "innnOOOOOOOOOdp|OOOpp", kwlist, &kind,
                                     &n_features, &n_outputs, &width, &o_root, &o_depth, &o_col,
                                     &o_feat, &o_thr, &o_left, &o_mgl, &o_value, &o_init, &divisor,
                                     &allow_nan, &o_bitset, &o_cat, &o_known, &allow_inf, &acc32))
        return -1;
    if (self->root != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Forest: already initialized");
        return -1;
    }
    if ((kind != 32 && kind != 64) || n_features < 1 || n_outputs < 1 || width < 1 ||
        width > n_outputs || divisor < 0) {
        PyErr_SetString(PyExc_ValueError, "Forest: invalid kind/n_features/n_outputs/width");
        return -1;
    }
    self->kind = kind;
    self->n_features = n_features;
    self->n_outputs = n_outputs;
    self->width = width;
    self->divisor = divisor;
    self->allow_nan = allow_nan;
    self->allow_inf = allow_inf;
    self->acc32 = acc32;

    Py_ssize_t n, n_trees, n_nodes;
    int32_t *feat = NULL, *left = NULL, *bitset = NULL;
    uint8_t *mgl = NULL;
    void *thr = NULL;
    int rc = -1;
    if (!(self->root = copy_vec(o_root, "root", 'i', 4, &n_trees))) goto done;
    self->n_trees = n_trees;
    if (!(self->depth = copy_vec(o_depth, "depth", 'i', 4, &n))) goto done;
    if (expect_len("depth", n, n_trees) < 0) goto done;
    if (!(self->col = copy_vec(o_col, "col", 'i', 4, &n))) goto done;
    if (expect_len("col", n, n_trees) < 0) goto done;
    if (!(feat = copy_vec(o_feat, "feature", 'i', 4, &n_nodes))) goto done;
    self->n_nodes = n_nodes;
    if (n_nodes < 1) {
        PyErr_SetString(PyExc_ValueError, "Forest: no nodes");
        goto done;
    }
    if (!(left = copy_vec(o_left, "left", 'i', 4, &n))) goto done;
    if (expect_len("left", n, n_nodes) < 0) goto done;
    if (!(mgl = copy_vec(o_mgl, "missing_left", 'B', 1, &n))) goto done;
    if (expect_len("missing_left", n, n_nodes) < 0) goto done;
    if (!(thr = copy_vec(o_thr, "threshold", kind == 32 ? 'f' : 'd', kind / 8, &n))) goto done;
    if (expect_len("threshold", n, n_nodes) < 0) goto done;
    if (!(self->values = copy_vec(o_value, "value", 'd', 8, &n))) goto done;
    if (expect_len("value", n, n_nodes * width) < 0) goto done;
    if (o_init != Py_None) {
        if (!(self->init = copy_vec(o_init, "init", 'd', 8, &n))) goto done;
        if (expect_len("init", n, n_outputs) < 0) goto done;
    }
    if (kind == 64) {
        if (o_bitset == Py_None || o_cat == Py_None || o_known == Py_None) {
            PyErr_SetString(PyExc_ValueError, "Forest: kind 64 needs bitset, cat_bitsets, known_bitsets");
            goto done;
        }
        if (!(bitset = copy_vec(o_bitset, "bitset", 'i', 4, &n))) goto done;
        if (expect_len("bitset", n, n_nodes) < 0) goto done;
        if (!(self->cat_bitsets = copy_vec(o_cat, "cat_bitsets", 'I', 4, &n))) goto done;
        if (n % 8) {
            PyErr_SetString(PyExc_ValueError, "Forest: cat_bitsets must hold 8 words per bitset");
            goto done;
        }
        self->n_bitsets = n / 8;
        if (!(self->known_bitsets = copy_vec(o_known, "known_bitsets", 'I', 4, &n))) goto done;
        if (expect_len("known_bitsets", n, n_features * 8) < 0) goto done;
    }
    if (self->init == NULL && (width != n_outputs || n_trees < 1)) {
        /* without an initial score the first tree must write every output column */
        PyErr_SetString(PyExc_ValueError, "Forest: init is required unless one tree fills out");
        goto done;
    }
    if (n_nodes >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "Forest: too many nodes");
        goto done;
    }
    if (validate_nodes(self, feat, left, bitset) < 0) goto done;

    if (kind == 32) {
        self->nodes32 = PyMem_RawMalloc(sizeof(Node32) * (size_t)n_nodes);
        if (!self->nodes32) goto nomem;
        for (Py_ssize_t i = 0; i < n_nodes; i++) {
            self->nodes32[i].thr = ((float *)thr)[i];
            self->nodes32[i].feat = feat[i];
            self->nodes32[i].left = left[i];
            self->nodes32[i].mgl = mgl[i] != 0;
        }
        for (Py_ssize_t i = 0; i < n_nodes; i++) {
            int32_t l = self->nodes32[i].left;
            if (l == i) continue; /* a leaf */
            self->nodes32[i].mgl |= (self->nodes32[l].left == l) * LEFT_LEAF;
            self->nodes32[i].mgl |= (self->nodes32[l + 1].left == l + 1) * (LEFT_LEAF << 1);
        }
    } else {
        self->nodes64 = PyMem_RawMalloc(sizeof(Node64) * (size_t)n_nodes);
        self->has_cat = PyMem_RawCalloc((size_t)(n_trees > 0 ? n_trees : 1), sizeof(int32_t));
        if (!self->nodes64 || !self->has_cat) goto nomem;
        for (Py_ssize_t i = 0; i < n_nodes; i++) {
            self->nodes64[i].thr = ((double *)thr)[i];
            self->nodes64[i].feat = feat[i];
            self->nodes64[i].left = left[i];
            self->nodes64[i].mgl = mgl[i] & (MGL | ZERO_MISSING);
            if (mgl[i] & ZERO_MISSING) self->has_zero = 1;
            self->nodes64[i].bitset = bitset[i] < 0 ? -1 : bitset[i];
        }
        /* A tree's nodes are the ones reachable from its root; mark trees with categorical splits
         * by walking each tree's node range (trees are stored one after the other). */
        for (Py_ssize_t t = 0; t < n_trees; t++) {
            Py_ssize_t end = t + 1 < n_trees ? self->root[t + 1] : n_nodes;
            for (Py_ssize_t i = self->root[t]; i < end && i < n_nodes; i++)
                if (self->nodes64[i].bitset >= 0) self->has_cat[t] = 1;
        }
    }
    rc = 0;
    goto done;
nomem:
    PyErr_NoMemory();
done:
    PyMem_RawFree(feat);
    PyMem_RawFree(left);
    PyMem_RawFree(mgl);
    PyMem_RawFree(thr);
    PyMem_RawFree(bitset);
    return rc;
}

/* ---------------------------------------------------------------- kernels */

/* Adds (or, for the first tree of a model without init, assigns) the leaf values of a block. */
static inline void accumulate(const Forest *f, Py_ssize_t t, const int32_t *idx, Py_ssize_t nb,
                              double *out, int assign) {
    const Py_ssize_t K = f->n_outputs, w = f->width, c = f->col[t];
    const double *v = f->values;
    if (f->acc32 && !assign) {
        for (Py_ssize_t r = 0; r < nb; r++) {
            const double *src = v + (Py_ssize_t)idx[r] * w;
            double *dst = out + r * K + c;
            for (Py_ssize_t j = 0; j < w; j++) dst[j] = (double)(float)(dst[j] + src[j]);
        }
        return;
    }
    if (w == 1) {
        if (assign)
            for (Py_ssize_t r = 0; r < nb; r++) out[r * K + c] = v[idx[r]];
        else
            for (Py_ssize_t r = 0; r < nb; r++) out[r * K + c] += v[idx[r]];
    } else {
        for (Py_ssize_t r = 0; r < nb; r++) {
            const double *src = v + (Py_ssize_t)idx[r] * w;
            double *dst = out + r * K + c;
            if (assign)
                for (Py_ssize_t j = 0; j < w; j++) dst[j] = src[j];
            else
                for (Py_ssize_t j = 0; j < w; j++) dst[j] += src[j];
        }
    }
}

/* One step of the float32 walk: the next node for value x. */
#define STEP32(nd, x, has_nan) \
    ((nd)->left + !(((x) <= (nd)->thr) | ((has_nan) & ((x) != (x)) & ((nd)->mgl & MGL))))

/* Shallow trees: every row takes `depth` steps, level by level over the block (leaves loop on
 * themselves). The rows are independent, so the CPU overlaps their memory loads. */
static inline void walk32_levels(const Node32 *nodes, int32_t root, int depth, const float *xb,
                                 Py_ssize_t nf, Py_ssize_t nb, int32_t *idx, int has_nan) {
    for (Py_ssize_t r = 0; r < nb; r++) idx[r] = root;
    for (int d = 0; d < depth; d++) {
        if (has_nan) {
            for (Py_ssize_t r = 0; r < nb; r++) {
                const Node32 *nd = nodes + idx[r];
                float x = xb[r * nf + nd->feat];
                idx[r] = STEP32(nd, x, 1);
            }
        } else {
            for (Py_ssize_t r = 0; r < nb; r++) {
                const Node32 *nd = nodes + idx[r];
                float x = xb[r * nf + nd->feat];
                idx[r] = STEP32(nd, x, 0);
            }
        }
    }
}

/* Deep, unbalanced trees: level by level over the rows still above a leaf; a row leaves the
 * active list as soon as it lands on a leaf, so short paths cost no padding steps. */
static inline void walk32_active(const Node32 *nodes, int32_t root, const float *xb,
                                 Py_ssize_t nf, Py_ssize_t nb, int32_t *idx, int32_t *act,
                                 int has_nan) {
    Py_ssize_t na = 0;
    for (Py_ssize_t r = 0; r < nb; r++) idx[r] = root;
    if (nodes[root].left == root) return; /* the root is a leaf */
    for (Py_ssize_t r = 0; r < nb; r++) act[r] = (int32_t)r;
    na = nb;
    while (na > 0) {
        Py_ssize_t j = 0;
        for (Py_ssize_t a = 0; a < na; a++) {
            int32_t r = act[a];
            const Node32 *nd = nodes + idx[r];
            float x = xb[(Py_ssize_t)r * nf + nd->feat];
            int32_t next = has_nan ? STEP32(nd, x, 1) : STEP32(nd, x, 0);
            int leaf = (nd->mgl >> (1 + (next - nd->left))) & 1;
            idx[r] = next;
            act[j] = r;
            j += !leaf;
        }
        na = j;
    }
}

/* Trees deeper than this use the active-row walk. */
#define DEEP 12

static inline int in_bitset(const uint32_t *bs, uint32_t v) { return (bs[v >> 5] >> (v & 31)) & 1; }

/* HistGradientBoosting's split rule (sklearn _predictor.pyx): NaN follows missing_go_to_left; a
 * categorical value < 0 or an unknown category is treated as missing; a category in the split's
 * bitset goes left, a known one not in it goes right. */
/* The numerical split: NaN (and, for a ZERO_MISSING node, a value within +-1e-35f) goes the
 * missing-value way, anything else left when x <= threshold. */
static inline int go_left64_num(const Node64 *nd, double x) {
    int missing = (x != x) | ((nd->mgl & ZERO_MISSING) && x >= -ZERO_THRESHOLD && x <= ZERO_THRESHOLD);
    return missing ? (nd->mgl & MGL) : (x <= nd->thr);
}

static inline int go_left64(const Forest *f, const Node64 *nd, double x) {
    if (f->has_zero && nd->bitset < 0) return go_left64_num(nd, x);
    if (nd->bitset < 0 || x != x) return (x <= nd->thr) | ((x != x) & nd->mgl);
    if (x < 0 || !(x < 256.0)) return nd->mgl;
    uint32_t v = (uint32_t)x; /* the category codes are small non-negative integers */
    if (in_bitset(f->cat_bitsets + (Py_ssize_t)nd->bitset * 8, v)) return 1;
    if (in_bitset(f->known_bitsets + (Py_ssize_t)nd->feat * 8, v)) return 0;
    return nd->mgl;
}

static inline void walk64(const Forest *f, Py_ssize_t t, const double *xb, Py_ssize_t nf,
                          Py_ssize_t nb, int32_t *idx) {
    const Node64 *nodes = f->nodes64;
    int32_t root = f->root[t];
    int depth = f->depth[t];
    for (Py_ssize_t r = 0; r < nb; r++) idx[r] = root;
    for (int d = 0; d < depth; d++) {
        int moved = 0;
        if (f->has_cat[t] || f->has_zero) {
            for (Py_ssize_t r = 0; r < nb; r++) {
                const Node64 *nd = nodes + idx[r];
                int32_t next = nd->left + !go_left64(f, nd, xb[r * nf + nd->feat]);
                moved |= next != idx[r];
                idx[r] = next;
            }
        } else {
            for (Py_ssize_t r = 0; r < nb; r++) {
                const Node64 *nd = nodes + idx[r];
                double x = xb[r * nf + nd->feat];
                int go_left = (x <= nd->thr) | ((x != x) & nd->mgl);
                int32_t next = nd->left + !go_left;
                moved |= next != idx[r];
                idx[r] = next;
            }
        }
        if (!moved) break;
    }
}

enum { ERR_NONE = 0, ERR_NAN = 1, ERR_INF = 2, ERR_MEM = 3 };

/* Casts a block to float32 as scikit-learn's check_array does, rejecting what it rejects. */
static int convert_block(const double *x, Py_ssize_t count, float *xb, int allow_nan,
                         int allow_inf, int *has_nan) {
    int nan_seen = 0, inf_seen = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        float v = (float)x[i];
        nan_seen |= v != v;
        inf_seen |= isinf(v);
        xb[i] = v;
    }
    *has_nan = nan_seen;
    if (inf_seen && !allow_inf) return ERR_INF;
    if (nan_seen && !allow_nan) return ERR_NAN;
    return ERR_NONE;
}

static void start_block(const Forest *f, double *out, Py_ssize_t nb) {
    const Py_ssize_t K = f->n_outputs;
    if (f->init == NULL) return;
    for (Py_ssize_t r = 0; r < nb; r++) memcpy(out + r * K, f->init, sizeof(double) * (size_t)K);
}

static void finish_block(const Forest *f, double *out, Py_ssize_t nb) {
    if (f->divisor == 0) return;
    Py_ssize_t count = nb * f->n_outputs;
    for (Py_ssize_t i = 0; i < count; i++) out[i] /= f->divisor;
}

static int run_forest(const Forest *f, const double *X, Py_ssize_t n, double *out) {
    const Py_ssize_t nf = f->n_features, K = f->n_outputs;
    int32_t idx[BLOCK], act[BLOCK];
    float *xb = NULL;
    if (f->kind == 32) {
        xb = PyMem_RawMalloc(sizeof(float) * (size_t)(BLOCK * nf));
        if (xb == NULL) return ERR_MEM;
    }
    int err = ERR_NONE;
    for (Py_ssize_t b0 = 0; b0 < n && err == ERR_NONE; b0 += BLOCK) {
        Py_ssize_t nb = n - b0 < BLOCK ? n - b0 : BLOCK;
        double *ob = out + b0 * K;
        const double *xd = X + b0 * nf;
        int has_nan = 0;
        if (f->kind == 32) {
            err = convert_block(xd, nb * nf, xb, f->allow_nan, f->allow_inf, &has_nan);
            if (err != ERR_NONE) break;
        }
        start_block(f, ob, nb);
        for (Py_ssize_t t = 0; t < f->n_trees; t++) {
            if (f->kind == 32 && f->depth[t] > DEEP)
                walk32_active(f->nodes32, f->root[t], xb, nf, nb, idx, act, has_nan);
            else if (f->kind == 32)
                walk32_levels(f->nodes32, f->root[t], f->depth[t], xb, nf, nb, idx, has_nan);
            else
                walk64(f, t, xd, nf, nb, idx);
            accumulate(f, t, idx, nb, ob, f->init == NULL && t == 0);
        }
        finish_block(f, ob, nb);
    }
    PyMem_RawFree(xb);
    return err;
}

/* ---------------------------------------------------------------- Python methods */

static int get_matrix(PyObject *obj, const char *name, int writable, Py_buffer *view) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (view->ndim != 2 || view->itemsize != 8 || strcmp(f, "d") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous 2-D float64 array", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *Forest_run(Forest *self, PyObject *args) {
    PyObject *o_x, *o_out;
    if (!PyArg_ParseTuple(args, "OO", &o_x, &o_out)) return NULL;
    if (self->root == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Forest: not initialized");
        return NULL;
    }
    Py_buffer xv, ov;
    if (get_matrix(o_x, "X", 0, &xv) < 0) return NULL;
    if (get_matrix(o_out, "out", 1, &ov) < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    Py_ssize_t n = xv.shape[0];
    int err = ERR_NONE;
    if (xv.shape[1] != self->n_features) {
        PyErr_Format(PyExc_ValueError, "X has %zd features, but the model expects %zd features",
                     xv.shape[1], self->n_features);
        goto fail;
    }
    if (ov.shape[0] != n || ov.shape[1] != self->n_outputs) {
        PyErr_Format(PyExc_ValueError, "out must have shape (%zd, %zd)", n, self->n_outputs);
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    err = run_forest(self, (const double *)xv.buf, n, (double *)ov.buf);
    Py_END_ALLOW_THREADS
    if (err == ERR_INF)
        PyErr_SetString(PyExc_ValueError,
                        "Input X contains infinity or a value too large for dtype('float32').");
    else if (err == ERR_NAN)
        PyErr_SetString(PyExc_ValueError, "Input X contains NaN.");
    else if (err == ERR_MEM)
        PyErr_NoMemory();
    if (err != ERR_NONE) goto fail;
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ov);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ov);
    return NULL;
}

/* ---------------------------------------------------------------- one row */

/* Row flags (Forest.row): reject NaN, reject infinity (float64 models; float32 models always reject
 * it, as run does), strict input (only float, int within int64 and None, as a SQL double). */
#define ROW_NO_NAN 1
#define ROW_NO_INF 2
#define ROW_STRICT 4
#define ROW_STACK 256

/* One value of a row as the double numpy would hold: float as is, None as NaN, int exactly rounded
 * (float(int)), bool 1.0/0.0; anything else is a TypeError. Returns -1 on error. */
static int row_value(PyObject *o, int strict, double *out) {
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    if (o == Py_None) {
        *out = NAN;
        return 0;
    }
    if (PyLong_CheckExact(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (overflow) {
            PyErr_SetString(PyExc_TypeError, "Forest.row: an integer outside the int64 range");
            return -1;
        }
        *out = (double)v; /* correctly rounded, as float(int) and numpy's int64 -> float64 */
        return 0;
    }
    if (strict) {
        PyErr_Format(PyExc_TypeError, "Forest.row: a %.100s where a number is expected",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if (PyBool_Check(o)) {
        *out = o == Py_True ? 1.0 : 0.0;
        return 0;
    }
    if (PyFloat_Check(o)) { /* float subclasses such as numpy.float64 */
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "Forest.row: a %.100s where a number is expected",
                 Py_TYPE(o)->tp_name);
    return -1;
}

static inline int32_t walk32_one(const Node32 *nodes, int32_t i, const float *x, int has_nan) {
    for (;;) {
        const Node32 *nd = nodes + i;
        if (nd->left == i) return i;
        float v = x[nd->feat];
        i = has_nan ? STEP32(nd, v, 1) : STEP32(nd, v, 0);
    }
}

static inline int32_t walk64_one(const Forest *f, Py_ssize_t t, const double *x) {
    const Node64 *nodes = f->nodes64;
    int32_t i = f->root[t];
    const int cat = f->has_cat[t];
    for (;;) {
        const Node64 *nd = nodes + i;
        if (nd->left == i) return i;
        double v = x[nd->feat];
        int go_left = (cat || f->has_zero) ? go_left64(f, nd, v)
                                           : ((v <= nd->thr) | ((v != v) & nd->mgl));
        i = nd->left + !go_left;
    }
}

/* Forest.row(values, flags): the raw scores of one row, as run() computes them for a one-row X.
 * values is a list or tuple of n_features numbers (see row_value); returns a tuple of n_outputs
 * floats. The GIL is kept: a row takes microseconds. */
static PyObject *Forest_row(Forest *self, PyObject *args) {
    PyObject *o_values;
    int flags;
    if (!PyArg_ParseTuple(args, "Oi", &o_values, &flags)) return NULL;
    if (self->root == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Forest: not initialized");
        return NULL;
    }
    if (!PyList_CheckExact(o_values) && !PyTuple_CheckExact(o_values)) {
        PyErr_SetString(PyExc_TypeError, "Forest.row: values must be a list or a tuple");
        return NULL;
    }
    const Py_ssize_t nf = self->n_features, K = self->n_outputs, w = self->width;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(o_values);
    if (n != nf) {
        PyErr_Format(PyExc_ValueError, "X has %zd features, but the model expects %zd features", n,
                     nf);
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(o_values);
    double xs_d[ROW_STACK], out_s[ROW_STACK];
    float xs_f[ROW_STACK];
    double *xd = xs_d, *out = out_s;
    float *xf = xs_f;
    void *heap = NULL;
    if (nf > ROW_STACK || K > ROW_STACK) {
        heap = PyMem_Malloc(sizeof(double) * (size_t)(2 * nf + K) + sizeof(float) * (size_t)nf);
        if (heap == NULL) return PyErr_NoMemory();
        xd = heap;
        out = xd + nf;
        xf = (float *)(out + K);
    }
    PyObject *result = NULL;
    int strict = (flags & ROW_STRICT) != 0, nan_seen = 0, inf_seen = 0;
    for (Py_ssize_t i = 0; i < nf; i++) {
        if (row_value(items[i], strict, xd + i) < 0) goto done;
        if (self->kind == 32) {
            float v = (float)xd[i];
            xf[i] = v;
            nan_seen |= v != v;
            inf_seen |= isinf(v);
        } else {
            nan_seen |= xd[i] != xd[i];
            inf_seen |= isinf(xd[i]);
        }
    }
    if (inf_seen && ((self->kind == 32 && !self->allow_inf) || (flags & ROW_NO_INF))) {
        PyErr_SetString(PyExc_ValueError,
                        self->kind == 32
                            ? "Input X contains infinity or a value too large for dtype('float32')."
                            : "Input X contains infinity.");
        goto done;
    }
    if (nan_seen && ((flags & ROW_NO_NAN) || (self->kind == 32 && !self->allow_nan))) {
        PyErr_SetString(PyExc_ValueError, "Input X contains NaN.");
        goto done;
    }
    if (self->init != NULL) memcpy(out, self->init, sizeof(double) * (size_t)K);
    for (Py_ssize_t t = 0; t < self->n_trees; t++) {
        int32_t leaf = self->kind == 32 ? walk32_one(self->nodes32, self->root[t], xf, nan_seen)
                                        : walk64_one(self, t, xd);
        const double *src = self->values + (Py_ssize_t)leaf * w;
        double *dst = out + self->col[t];
        if (self->init == NULL && t == 0)
            for (Py_ssize_t j = 0; j < w; j++) dst[j] = src[j];
        else if (self->acc32)
            for (Py_ssize_t j = 0; j < w; j++) dst[j] = (double)(float)(dst[j] + src[j]);
        else
            for (Py_ssize_t j = 0; j < w; j++) dst[j] += src[j];
    }
    if (self->divisor != 0)
        for (Py_ssize_t j = 0; j < K; j++) out[j] /= self->divisor;
    result = PyTuple_New(K);
    if (result == NULL) goto done;
    for (Py_ssize_t j = 0; j < K; j++) {
        PyObject *v = PyFloat_FromDouble(out[j]);
        if (v == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyTuple_SET_ITEM(result, j, v);
    }
done:
    PyMem_Free(heap);
    return result;
}

static PyMethodDef Forest_methods[] = {
    {"run", (PyCFunction)Forest_run, METH_VARARGS,
     "run(X, out): out (n, K) = init + each tree's leaf values in order (then / divisor)."},
    {"row", (PyCFunction)Forest_row, METH_VARARGS,
     "row(values, flags): one row's raw scores (a tuple), exactly as run() on a one-row X."},
    {NULL, NULL, 0, NULL}};

static PyObject *Forest_get_nodes(Forest *self, void *closure) {
    return PyLong_FromSsize_t(self->n_nodes);
}

static PyGetSetDef Forest_getset[] = {
    {"n_nodes", (getter)Forest_get_nodes, NULL, "number of nodes", NULL}, {NULL}};

static PyTypeObject ForestType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "udfs.plan._kernels.Forest",
    .tp_basicsize = sizeof(Forest),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A compiled tree ensemble (see udfs/plan/tree_exec.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Forest_init,
    .tp_dealloc = (destructor)Forest_dealloc,
    .tp_methods = Forest_methods,
    .tp_getset = Forest_getset,
};

/* binary_proba(raw, out, scale): out[:, 1] = expit(scale * raw), out[:, 0] = 1 - out[:, 1].
 * 1 / (1 + exp(-z)) with the C library's exp is bit-identical to scipy.special.expit. */
static PyObject *binary_proba(PyObject *module, PyObject *args) {
    PyObject *o_raw, *o_out;
    double scale;
    if (!PyArg_ParseTuple(args, "OOd", &o_raw, &o_out, &scale)) return NULL;
    Py_buffer rv, ov;
    if (PyObject_GetBuffer(o_raw, &rv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (get_matrix(o_out, "out", 1, &ov) < 0) {
        PyBuffer_Release(&rv);
        return NULL;
    }
    const char *f = rv.format ? rv.format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    Py_ssize_t n = rv.len / 8;
    if (rv.itemsize != 8 || strcmp(f, "d") != 0 || ov.shape[0] != n || ov.shape[1] != 2) {
        PyErr_SetString(PyExc_ValueError, "binary_proba: raw (n,) float64 and out (n, 2) float64");
        PyBuffer_Release(&rv);
        PyBuffer_Release(&ov);
        return NULL;
    }
    const double *raw = rv.buf;
    double *out = ov.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        double p = 1.0 / (1.0 + exp(-(scale * raw[i])));
        out[2 * i + 1] = p;
        out[2 * i] = 1 - p;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&rv);
    PyBuffer_Release(&ov);
    Py_RETURN_NONE;
}

/* Strips the byte-order prefix of a buffer format. */
static const char *bare_format(const Py_buffer *view) {
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    return f;
}

/* exp_array(x, out): out[i] = exp(x[i]) with the C library's exp, as math.exp computes it
 * (and scipy's expit through it): bit-identical, without a Python call per value. */
static PyObject *exp_array(PyObject *module, PyObject *args) {
    PyObject *o_x, *o_out;
    if (!PyArg_ParseTuple(args, "OO", &o_x, &o_out)) return NULL;
    Py_buffer xv, ov;
    if (PyObject_GetBuffer(o_x, &xv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(o_out, &ov, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    if (xv.itemsize != 8 || ov.itemsize != 8 || strcmp(bare_format(&xv), "d") != 0 ||
        strcmp(bare_format(&ov), "d") != 0 || xv.len != ov.len) {
        PyErr_SetString(PyExc_ValueError, "exp_array: x and out must be float64 of one size");
        PyBuffer_Release(&xv);
        PyBuffer_Release(&ov);
        return NULL;
    }
    const double *x = xv.buf;
    double *out = ov.buf;
    Py_ssize_t n = xv.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) out[i] = exp(x[i]);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ov);
    Py_RETURN_NONE;
}

/* The float32 functions XGBoost applies (src/common/math.h, src/objective/regression_loss.h),
 * step for step in float arithmetic with the C library's expf/logf:
 *  0 XGBoost's Sigmoid: 1.0f / (expf(std::min(-x, 88.7f)) + 1.0f + 1e-16f)
 *  1 expf(x)  (count:poisson, reg:gamma, reg:tweedie)
 *  2 XGBoost's logistic ProbToMargin: -logf(1.0f / b - 1.0f), b clamped to [1e-6f, 1 - 1e-6f]
 *  3 logf(x)  (the base margin of the exp objectives) */
static inline float xgb_sigmoid(float x) {
    const float eps = 1e-16f;
    float nx = -x;
    float m = (88.7f < nx) ? 88.7f : nx; /* std::min(-x, 88.7f): NaN stays NaN */
    float denom = expf(m) + 1.0f;
    denom = denom + eps;
    return 1.0f / denom;
}

static inline float xgb_logit(float b) {
    const float lo = 1e-6f, hi = 1.0f - 1e-6f;
    b = b < lo ? lo : b; /* common::Max(b, kRtEps) */
    b = hi < b ? hi : b; /* common::Min(b, 1 - kRtEps) */
    return -logf(1.0f / b - 1.0f);
}

/* f32_unary(op, x, out): out[i] = f(x[i]) for float32 buffers of one size (ops above). */
static PyObject *f32_unary(PyObject *module, PyObject *args) {
    int op;
    PyObject *o_x, *o_out;
    if (!PyArg_ParseTuple(args, "iOO", &op, &o_x, &o_out)) return NULL;
    if (op < 0 || op > 3) {
        PyErr_Format(PyExc_ValueError, "f32_unary: unknown op %d", op);
        return NULL;
    }
    Py_buffer xv, ov;
    if (PyObject_GetBuffer(o_x, &xv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(o_out, &ov, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    if (xv.itemsize != 4 || ov.itemsize != 4 || strcmp(bare_format(&xv), "f") != 0 ||
        strcmp(bare_format(&ov), "f") != 0 || xv.len != ov.len) {
        PyErr_SetString(PyExc_ValueError, "f32_unary: x and out must be float32 of one size");
        PyBuffer_Release(&xv);
        PyBuffer_Release(&ov);
        return NULL;
    }
    const float *x = xv.buf;
    float *out = ov.buf;
    Py_ssize_t n = xv.len / 4;
    Py_BEGIN_ALLOW_THREADS
    switch (op) {
    case 0:
        for (Py_ssize_t i = 0; i < n; i++) out[i] = xgb_sigmoid(x[i]);
        break;
    case 1:
        for (Py_ssize_t i = 0; i < n; i++) out[i] = expf(x[i]);
        break;
    case 2:
        for (Py_ssize_t i = 0; i < n; i++) out[i] = xgb_logit(x[i]);
        break;
    default:
        for (Py_ssize_t i = 0; i < n; i++) out[i] = logf(x[i]);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ov);
    Py_RETURN_NONE;
}

/* lookup(values, table, unknown, out): out[i] = table.get(values[i], unknown) for an object
 * array, as the Python loop would (same hashing and equality: a dict lookup per value). */
static PyObject *lookup(PyObject *module, PyObject *args) {
    PyObject *o_values, *table, *o_out;
    Py_ssize_t unknown;
    if (!PyArg_ParseTuple(args, "OO!nO", &o_values, &PyDict_Type, &table, &unknown, &o_out))
        return NULL;
    Py_buffer vv, ov;
    if (PyObject_GetBuffer(o_values, &vv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(o_out, &ov, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&vv);
        return NULL;
    }
    const char *vf = bare_format(&vv), *of = bare_format(&ov);
    int out_ok = ov.itemsize == (Py_ssize_t)sizeof(Py_ssize_t) && (*of == 'n' || *of == 'l' || *of == 'q');
    if (strcmp(vf, "O") != 0 || !out_ok || vv.len / vv.itemsize != ov.len / ov.itemsize) {
        PyErr_SetString(PyExc_ValueError, "lookup: values must be an object array, out intp of one size");
        PyBuffer_Release(&vv);
        PyBuffer_Release(&ov);
        return NULL;
    }
    PyObject **values = vv.buf;
    Py_ssize_t *out = ov.buf;
    Py_ssize_t n = vv.len / vv.itemsize;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *hit = PyDict_GetItemWithError(table, values[i]);
        if (hit == NULL) {
            if (PyErr_Occurred()) {
                PyBuffer_Release(&vv);
                PyBuffer_Release(&ov);
                return NULL;
            }
            out[i] = unknown;
        } else {
            out[i] = PyLong_AsSsize_t(hit);
        }
    }
    PyBuffer_Release(&vv);
    PyBuffer_Release(&ov);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"binary_proba", binary_proba, METH_VARARGS,
     "binary_proba(raw, out, scale): two-column probabilities from a binary raw score."},
    {"exp_array", exp_array, METH_VARARGS,
     "exp_array(x, out): the C library's exp of every float64 of x, into out."},
    {"f32_unary", f32_unary, METH_VARARGS,
     "f32_unary(op, x, out): XGBoost's float32 sigmoid (0), expf (1), logit (2), logf (3)."},
    {"lookup", lookup, METH_VARARGS,
     "lookup(values, table, unknown, out): table.get(v, unknown) for each object of values."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "udfs.plan._kernels",
    "Compiled kernels for udfs scoring plans (tree ensembles).", -1, module_methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    if (PyType_Ready(&ForestType) < 0) return NULL;
    PyObject *m = PyModule_Create(&kernels_module);
    if (m == NULL) return NULL;
    Py_INCREF(&ForestType);
    if (PyModule_AddObject(m, "Forest", (PyObject *)&ForestType) < 0) {
        Py_DECREF(&ForestType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "BLOCK", BLOCK);
    PyModule_AddIntConstant(m, "ROW_NO_NAN", ROW_NO_NAN);
    PyModule_AddIntConstant(m, "ROW_NO_INF", ROW_NO_INF);
    PyModule_AddIntConstant(m, "ROW_STRICT", ROW_STRICT);
    PyModule_AddIntConstant(m, "ZERO_MISSING", ZERO_MISSING);
    return m;
}
