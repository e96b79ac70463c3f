/* `collab.yjs.scan.quick_check` in C: the same verdicts on the same bytes, ~10x faster.
 *
 * quick_check(data, state, known_highs, loaded_highs=None)
 *     -> (ends, highs, refs, nested, deletes_at) or None
 * string_highs(data) -> (ends, highs, deletes_at) or None
 *
 * Reads a Yjs update (v1) as `collab.yjs.scan` does in Python and returns the fields of its
 * `Summary` when the update is a well-formed text update that passes every check, None when
 * the full decoder and checks must decide (anything malformed; content other than strings,
 * deletions and GC ranges; a map key; a gap; an item depending on its own later item or on
 * an unknown one; a clock past 2**32 - 1; an item or deletion edge between the halves of a
 * surrogate pair; dependencies that cannot all integrate). It only ever accepts: refusals and
 * their reasons are the full checks'. tests/test_update_scan.py holds both implementations to
 * the full checks' verdicts and to each other's answers.
 *
 * `state` is a dict (client -> next clock known), `known_highs` a dict (client -> set of the
 * document's high-surrogate clocks), `loaded_highs` a dict (client -> bytes: more of them,
 * sorted, as native unsigned 64-bit integers; what `string_highs` found in a loaded state).
 *
 * `string_highs` reads a whole state (or any update of strings, deletions and GC ranges, one
 * group per client) without checking it: its end clock per client and the clocks of its high
 * surrogates per client as bytes (sorted native unsigned 64-bit integers), None when the
 * full decoder must read it. It walks the bytes with the GIL released: the loader runs it in
 * a thread beside the event loop. Every read is bounds-checked; each loop is bounded by the
 * buffer's length (a count larger than the bytes left is refused before its loop); what is
 * collected is at most a few entries per byte read. Python objects are made only for the
 * answer and for lookups in `state` and `known_highs`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VAR_UINT ((uint64_t)9007199254740991ULL) /* 2**53 - 1, as lib0 enforces */
#define MAX_VAR_UINT_BYTES 8
#define MAX_CLOCK ((uint64_t)4294967295ULL) /* 2**32 - 1: Yrs's clocks are 32-bit */
#define REF_GC 0
#define REF_DELETED 1
#define REF_STRING 4

/* A growable array of fixed-size items. */
typedef struct {
    char *items;
    size_t len, cap, size;
} Vec;

static void *vec_push(Vec *v) {
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        char *items = realloc(v->items, cap * v->size);
        if (items == NULL) return NULL;
        v->items = items;
        v->cap = cap;
    }
    return v->items + v->size * v->len++;
}

#define AT(vec, type, i) (((type *)(vec).items)[i])

typedef struct {
    uint64_t client, start, end, known; /* known: state.get(client, 0) */
    size_t waits_from, waits_to;         /* its range in `waits` */
    size_t highs_from, highs_to;         /* its range in `highs` */
} Group;

typedef struct {
    uint64_t client;
    int64_t clock; /* a clock that must not be a high surrogate (may be -1) */
} Probe;

typedef struct {
    uint64_t clock, dep, k; /* the item at `clock` waits for (dep, k) */
} Wait;

typedef struct {
    const unsigned char *data;
    size_t len, pos;
    int fallback; /* any reason to leave the update to the full decoder */
    PyObject *state; /* NULL: `string_highs`'s walk (no checks, no Python object touched) */
    uint64_t cached_client, cached_known; /* the last state lookup */
    int cached;
    Vec groups, probes, waits, highs; /* Group, Probe, Wait, uint64_t */
    unsigned refs;                    /* bit per content ref seen */
    int nested;                       /* an item names its parent item by ID */
    size_t deletes_at;                /* where the delete set starts */
} Scan;

/* A varUint as lib0 reads it: at most 8 bytes, at most 2**53 - 1, over-long forms accepted. */
static uint64_t read_uint(Scan *s) {
    uint64_t value = 0;
    for (int i = 0; i < MAX_VAR_UINT_BYTES; i++) {
        if (s->pos >= s->len) break;
        unsigned char byte = s->data[s->pos++];
        value |= (uint64_t)(byte & 0x7F) << (7 * i);
        if (byte < 0x80) {
            if (value <= MAX_VAR_UINT) return value;
            break;
        }
    }
    s->fallback = 1;
    return 0;
}

/* A count of things that follow, each at least `min_bytes` long: one that the bytes left
 * cannot hold leaves the update to the full decoder (it bounds every loop by the input). */
static uint64_t read_count(Scan *s, uint64_t min_bytes) {
    uint64_t count = read_uint(s);
    if (!s->fallback && count > (s->len - s->pos) / min_bytes) s->fallback = 1;
    return count;
}

/* state.get(client, 0) into *known; -1 on a Python error. */
static int known_clock(Scan *s, uint64_t client, uint64_t *known) {
    if (s->state == NULL) { /* string_highs: every clock counts as known */
        *known = UINT64_MAX;
        return 0;
    }
    if (s->cached && s->cached_client == client) {
        *known = s->cached_known;
        return 0;
    }
    PyObject *key = PyLong_FromUnsignedLongLong(client);
    if (key == NULL) return -1;
    PyObject *value = PyDict_GetItemWithError(s->state, key);
    Py_DECREF(key);
    if (value == NULL) {
        if (PyErr_Occurred()) return -1;
        *known = 0;
    } else {
        unsigned long long clock = PyLong_AsUnsignedLongLong(value);
        if (clock == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        *known = clock;
    }
    s->cached = 1;
    s->cached_client = client;
    s->cached_known = *known;
    return 0;
}

static int push_probe(Scan *s, uint64_t client, int64_t clock) {
    if (s->state == NULL) return 0; /* string_highs: no checks */
    Probe *p = vec_push(&s->probes);
    if (p == NULL) return -1;
    p->client = client;
    p->clock = clock;
    return 0;
}

static int push_wait(Scan *s, uint64_t clock, uint64_t dep, uint64_t k) {
    Wait *w = vec_push(&s->waits);
    if (w == NULL) return -1;
    w->clock = clock;
    w->dep = dep;
    w->k = k;
    return 0;
}

/* Strict UTF-8, as Python decodes it (no overlong forms, no surrogates, nothing past
 * U+10FFFF): the text's length in UTF-16 units, or -1. With `clock`, pushes the clock of each
 * astral character's high surrogate onto `highs`; -2 if that fails. */
static int64_t utf16_units(const unsigned char *t, size_t n, uint64_t clock, Vec *highs) {
    size_t i = 0;
    int64_t units = 0;
    while (i < n) {
        unsigned char c = t[i];
        if (c < 0x80) {
            i += 1;
            units += 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (t[i + 1] & 0xC0) != 0x80) return -1;
            i += 2;
            units += 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n || (t[i + 1] & 0xC0) != 0x80 || (t[i + 2] & 0xC0) != 0x80) return -1;
            if (c == 0xE0 && t[i + 1] < 0xA0) return -1;  /* overlong */
            if (c == 0xED && t[i + 1] >= 0xA0) return -1; /* a surrogate */
            i += 3;
            units += 1;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n || (t[i + 1] & 0xC0) != 0x80 || (t[i + 2] & 0xC0) != 0x80 ||
                (t[i + 3] & 0xC0) != 0x80)
                return -1;
            if (c == 0xF0 && t[i + 1] < 0x90) return -1;  /* overlong */
            if (c == 0xF4 && t[i + 1] >= 0x90) return -1; /* past U+10FFFF */
            if (highs != NULL) {
                uint64_t *high = vec_push(highs);
                if (high == NULL) return -2;
                *high = clock + (uint64_t)units;
            }
            i += 4;
            units += 2;
        } else {
            return -1;
        }
    }
    return units;
}

/* ---- the walk: one pass over the bytes ---- */

/* An item's dependency on (dep, k) through its origin (shift 0) or right origin (shift 1):
 * its own earlier item, a known one, or one this update must integrate first (a wait). */
static int origin(Scan *s, Group *g, uint64_t clock, int shift) {
    uint64_t dep = read_uint(s), k = read_uint(s), known;
    if (s->fallback) return 0;
    if (dep == g->client) {
        if (k >= clock) { /* its own later item */
            s->fallback = 1;
            return 0;
        }
    } else {
        if (known_clock(s, dep, &known)) return -1;
        if (k >= known && push_wait(s, clock, dep, k)) return -1;
    }
    return push_probe(s, dep, (int64_t)k - shift);
}

/* An item's parent: a root type's name (checked as UTF-8) or a parent item's ID. */
static int parent(Scan *s, Group *g, uint64_t clock, unsigned char info) {
    uint64_t kind = read_uint(s), known;
    if (s->fallback) return 0;
    if (kind == 1) {
        uint64_t length = read_uint(s);
        if (s->fallback) return 0;
        if (length > s->len - s->pos || utf16_units(s->data + s->pos, length, 0, NULL) < 0) {
            s->fallback = 1;
            return 0;
        }
        s->pos += length;
    } else {
        uint64_t dep = read_uint(s), k = read_uint(s);
        if (s->fallback) return 0;
        s->nested = 1;
        if (dep == g->client) {
            if (k >= clock) s->fallback = 1;
        } else {
            if (known_clock(s, dep, &known)) return -1;
            if (k >= known && push_wait(s, clock, dep, k)) return -1;
        }
    }
    if (info & 0x20) s->fallback = 1; /* a map key: not text */
    return 0;
}

/* One struct of a group; advances `*clock` past it. */
static int one_struct(Scan *s, Group *g, uint64_t *clock) {
    if (s->pos >= s->len) {
        s->fallback = 1;
        return 0;
    }
    unsigned char info = s->data[s->pos++];
    int ref = info & 0x1F;
    if (ref == REF_GC) {
        s->refs |= 1u << REF_GC;
        *clock += read_uint(s);
        return 0;
    }
    if (ref != REF_STRING && ref != REF_DELETED) {
        s->fallback = 1;
        return 0;
    }
    if ((info & 0x80) && origin(s, g, *clock, 0)) return -1;
    if (!s->fallback && (info & 0x40) && origin(s, g, *clock, 1)) return -1;
    if (!s->fallback && !(info & 0xC0) && parent(s, g, *clock, info)) return -1;
    uint64_t length = read_uint(s);
    if (s->fallback) return 0;
    s->refs |= 1u << ref;
    if (ref == REF_STRING) {
        if (length > s->len - s->pos) {
            s->fallback = 1;
            return 0;
        }
        int64_t units = utf16_units(s->data + s->pos, length, *clock, &s->highs);
        if (units == -2) return -1;
        if (units < 0) {
            s->fallback = 1;
            return 0;
        }
        s->pos += length;
        length = (uint64_t)units;
    }
    *clock += length;
    return 0;
}

static int one_group(Scan *s) {
    uint64_t n = read_count(s, 2);
    if (s->fallback || n == 0) {
        s->fallback = 1;
        return 0;
    }
    Group g = {0};
    g.client = read_uint(s);
    g.start = read_uint(s);
    if (s->fallback) return 0;
    if (known_clock(s, g.client, &g.known)) return -1;
    if (g.start > g.known) { /* a gap before the group */
        s->fallback = 1;
        return 0;
    }
    g.waits_from = s->waits.len;
    g.highs_from = s->highs.len;
    uint64_t clock = g.start;
    for (uint64_t i = 0; i < n && !s->fallback; i++) {
        if (one_struct(s, &g, &clock)) return -1;
        if (clock > MAX_CLOCK) s->fallback = 1; /* ends past 2**32 - 1 */
    }
    if (s->fallback) return 0;
    g.end = clock;
    g.waits_to = s->waits.len;
    g.highs_to = s->highs.len;
    Group *kept = vec_push(&s->groups);
    if (kept == NULL) return -1;
    *kept = g;
    return 0;
}

static int by_client(const void *a, const void *b) {
    uint64_t x = ((const Group *)a)->client, y = ((const Group *)b)->client;
    return (x > y) - (x < y);
}

/* The group of `client`, or NULL (once `groups` is sorted by client). */
static Group *group_of(Scan *s, uint64_t client) {
    Group key = {.client = client};
    if (s->groups.len == 0) return NULL; /* (no array to search) */
    return bsearch(&key, s->groups.items, s->groups.len, sizeof(Group), by_client);
}

/* Sorts the groups by client for `group_of`; two groups of one client: the full checks. */
static void sort_groups(Scan *s) {
    if (s->groups.len < 2) return;
    qsort(s->groups.items, s->groups.len, sizeof(Group), by_client);
    for (size_t i = 1; i < s->groups.len; i++)
        if (AT(s->groups, Group, i).client == AT(s->groups, Group, i - 1).client)
            s->fallback = 1;
}

/* The delete set: each range must be known, and its edges are probed. */
static int deletes(Scan *s) {
    uint64_t clients = read_count(s, 2);
    for (uint64_t c = 0; c < clients && !s->fallback; c++) {
        uint64_t client = read_uint(s), n = read_count(s, 2), available;
        if (s->fallback) return 0;
        if (known_clock(s, client, &available)) return -1;
        Group *g = group_of(s, client);
        if (g != NULL && g->end > available) available = g->end;
        if (available > MAX_CLOCK) available = MAX_CLOCK; /* the decoder's limit */
        for (uint64_t i = 0; i < n; i++) {
            uint64_t clock = read_uint(s), length = read_uint(s);
            if (s->fallback) return 0;
            if (clock + length > available) {
                s->fallback = 1;
                return 0;
            }
            if (push_probe(s, client, (int64_t)clock - 1) ||
                push_probe(s, client, (int64_t)(clock + length) - 1))
                return -1;
        }
    }
    return 0;
}

static int walk(Scan *s) {
    uint64_t groups = read_count(s, 4);
    for (uint64_t i = 0; i < groups && !s->fallback; i++)
        if (one_group(s)) return -1;
    if (s->fallback) return 0;
    sort_groups(s);
    s->deletes_at = s->pos;
    if (!s->fallback && deletes(s)) return -1;
    if (s->pos != s->len) s->fallback = 1;
    return 0;
}

/* ---- the checks on what the walk collected ---- */

/* The update's own high surrogates as a hash set of (client, clock), open addressing. */
typedef struct {
    uint64_t client, clock; /* clock EMPTY: a free slot (clocks stay below 2**53) */
} Slot;

#define EMPTY UINT64_MAX

typedef struct {
    Slot *slots;
    size_t mask;
} HighSet;

/* Random per process (from os.urandom at import): clocks and clients are chosen by whoever
 * sends the update, who must not be able to pile them into one chain of slots. */
static uint64_t hash_seed;

static size_t slot_of(const HighSet *set, uint64_t client, uint64_t clock) {
    uint64_t h = (client ^ hash_seed) * 0x9E3779B97F4A7C15ULL ^ clock; /* splitmix64's end */
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
    return (size_t)(h ^ (h >> 31)) & set->mask;
}

/* A set of every group's highs; -1 if out of memory. */
static int high_set(Scan *s, HighSet *set) {
    size_t size = 16;
    while (size < 2 * s->highs.len) size *= 2;
    set->slots = malloc(size * sizeof(Slot));
    if (set->slots == NULL) return -1;
    set->mask = size - 1;
    for (size_t i = 0; i < size; i++) set->slots[i].clock = EMPTY;
    for (size_t i = 0; i < s->groups.len; i++) {
        Group *g = &AT(s->groups, Group, i);
        for (size_t h = g->highs_from; h < g->highs_to; h++) {
            uint64_t clock = AT(s->highs, uint64_t, h);
            size_t at = slot_of(set, g->client, clock);
            while (set->slots[at].clock != EMPTY) at = (at + 1) & set->mask;
            set->slots[at] = (Slot){g->client, clock}; /* clocks are unique per client */
        }
    }
    return 0;
}

static int is_high(const HighSet *set, uint64_t client, int64_t clock) {
    if (clock < 0) return 0;
    for (size_t at = slot_of(set, client, (uint64_t)clock);; at = (at + 1) & set->mask) {
        Slot *slot = &set->slots[at];
        if (slot->clock == EMPTY) return 0;
        if (slot->clock == (uint64_t)clock && slot->client == client) return 1;
    }
}

/* known_highs[client] as a set with members, else NULL (a borrowed reference); sets
 * s->fallback for a value that is not a set (the full checks decide); -1 on an error. */
static int known_set(Scan *s, PyObject *known_highs, uint64_t client, PyObject **set) {
    *set = NULL;
    if (PyDict_GET_SIZE(known_highs) == 0) return 0;
    PyObject *key = PyLong_FromUnsignedLongLong(client);
    if (key == NULL) return -1;
    PyObject *value = PyDict_GetItemWithError(known_highs, key);
    Py_DECREF(key);
    if (value == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyAnySet_Check(value)) s->fallback = 1;
    else if (PySet_GET_SIZE(value)) *set = value;
    return 0;
}

/* loaded_highs[client] as bytes of sorted clocks with members, else NULL (a borrowed
 * reference); sets s->fallback for a value that is not bytes of whole clocks; -1 on an
 * error. */
static int loaded_clocks(Scan *s, PyObject *loaded_highs, uint64_t client, PyObject **clocks) {
    *clocks = NULL;
    if (loaded_highs == NULL || PyDict_GET_SIZE(loaded_highs) == 0) return 0;
    PyObject *key = PyLong_FromUnsignedLongLong(client);
    if (key == NULL) return -1;
    PyObject *value = PyDict_GetItemWithError(loaded_highs, key);
    Py_DECREF(key);
    if (value == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyBytes_Check(value) || PyBytes_GET_SIZE(value) % sizeof(uint64_t)) s->fallback = 1;
    else if (PyBytes_GET_SIZE(value)) *clocks = value;
    return 0;
}

/* Whether `clock` is among `clocks` (bytes of sorted native unsigned 64-bit integers). */
static int in_sorted(PyObject *clocks, int64_t clock) {
    if (clock < 0) return 0;
    const char *items = PyBytes_AS_STRING(clocks);
    size_t low = 0, high = (size_t)PyBytes_GET_SIZE(clocks) / sizeof(uint64_t);
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        uint64_t at;
        memcpy(&at, items + middle * sizeof(uint64_t), sizeof(at));
        if (at == (uint64_t)clock) return 1;
        if (at < (uint64_t)clock) low = middle + 1;
        else high = middle;
    }
    return 0;
}

/* Whether `clock` is in `set`; -1 on an error. */
static int in_set(PyObject *set, int64_t clock) {
    PyObject *value = PyLong_FromLongLong(clock);
    if (value == NULL) return -1;
    int found = PySet_Contains(set, value);
    Py_DECREF(value);
    return found;
}

/* No string is cut inside one of its own pairs at the known clock, and no item or deletion
 * starts or ends between the halves of a pair, known or in this update. The probes come in
 * runs of one client: its known set is looked up once per run. */
static int no_split_pairs(Scan *s, PyObject *known_highs, PyObject *loaded_highs) {
    HighSet mine;
    if (high_set(s, &mine)) return -1;
    int failed = 0;
    for (size_t i = 0; i < s->groups.len; i++) {
        Group *g = &AT(s->groups, Group, i);
        /* known - 1 as a clock: none below 0 nor past 2**53 - 1 (state clocks may be) */
        uint64_t below_known = g->known - 1;
        if (below_known <= MAX_VAR_UINT && is_high(&mine, g->client, (int64_t)below_known))
            goto split;
    }
    PyObject *known = NULL, *loaded = NULL;
    for (size_t i = 0; i < s->probes.len; i++) {
        Probe *p = &AT(s->probes, Probe, i);
        if (i == 0 || p->client != AT(s->probes, Probe, i - 1).client) {
            failed = known_set(s, known_highs, p->client, &known) ||
                     loaded_clocks(s, loaded_highs, p->client, &loaded);
            if (failed || s->fallback) goto out;
        }
        if (is_high(&mine, p->client, p->clock)) goto split;
        if (loaded != NULL && in_sorted(loaded, p->clock)) goto split;
        if (known != NULL) {
            int found = in_set(known, p->clock);
            if (found) {
                failed = found < 0;
                if (failed) goto out;
                goto split;
            }
        }
    }
    goto out;
split:
    s->fallback = 1;
out:
    free(mine.slots);
    return failed ? -1 : 0;
}

/* A min-heap of (k, waiting group) per group waited for. */
typedef struct {
    uint64_t k;
    size_t group;
} Blocked;

static int heap_push(Vec *heap, uint64_t k, size_t group) {
    Blocked *slot = vec_push(heap);
    if (slot == NULL) return -1;
    size_t i = heap->len - 1;
    Blocked item = {k, group};
    while (i > 0 && AT(*heap, Blocked, (i - 1) / 2).k > k) {
        AT(*heap, Blocked, i) = AT(*heap, Blocked, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    AT(*heap, Blocked, i) = item;
    return 0;
}

static Blocked heap_pop(Vec *heap) {
    Blocked top = AT(*heap, Blocked, 0), last = AT(*heap, Blocked, --heap->len);
    size_t i = 0, n = heap->len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && AT(*heap, Blocked, child + 1).k < AT(*heap, Blocked, child).k)
            child++;
        if (AT(*heap, Blocked, child).k >= last.k) break;
        AT(*heap, Blocked, i) = AT(*heap, Blocked, child);
        i = child;
    }
    if (n) AT(*heap, Blocked, i) = last;
    return top;
}

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Every struct integrates: the waits resolve in some order (as
 * `collab.yjs.checks._cannot_integrate` decides it, on the waits alone). */
static int integrates(Scan *s) {
    size_t n = s->groups.len;
    if (s->waits.len == 0) return 0;
    /* Each wait's dependency, as its group's index. */
    size_t *dep_of = malloc(sizeof(size_t) * s->waits.len);
    uint64_t *done = malloc(sizeof(uint64_t) * n);
    size_t *next = malloc(sizeof(size_t) * n), *ready = malloc(sizeof(size_t) * (n + 1));
    Vec *heaps = calloc(n, sizeof(Vec));
    int failed = -1;
    if (!dep_of || !done || !next || !ready || !heaps) goto out;
    failed = 0;
    for (size_t i = 0; i < n; i++) {
        Group *g = &AT(s->groups, Group, i);
        for (size_t w = g->waits_from; w < g->waits_to; w++) {
            Wait *wait = &AT(s->waits, Wait, w);
            Group *dep = group_of(s, wait->dep);
            if (dep == NULL || wait->k >= max_u64(dep->end, dep->known)) { /* unknown */
                s->fallback = 1;
                goto out;
            }
            dep_of[w] = (size_t)(dep - (Group *)s->groups.items);
        }
    }
    size_t readies = 0;
    for (size_t i = 0; i < n; i++) {
        Group *g = &AT(s->groups, Group, i);
        heaps[i].size = sizeof(Blocked);
        next[i] = g->waits_from;
        if (g->waits_to > g->waits_from) {
            done[i] = g->known;
            ready[readies++] = i;
        } else {
            done[i] = max_u64(g->end, g->known);
        }
    }
    /* A group is in `ready` or in one heap at a time, so `ready` never holds more than n. */
    while (readies) {
        size_t i = ready[--readies];
        Group *g = &AT(s->groups, Group, i);
        size_t w = next[i];
        for (; w < g->waits_to; w++) {
            Wait *wait = &AT(s->waits, Wait, w);
            if (wait->k >= done[dep_of[w]]) {
                if (heap_push(&heaps[dep_of[w]], wait->k, i)) {
                    failed = -1;
                    goto out;
                }
                done[i] = max_u64(g->known, wait->clock);
                break;
            }
        }
        if (w == g->waits_to) done[i] = max_u64(g->known, g->end);
        next[i] = w;
        while (heaps[i].len && AT(heaps[i], Blocked, 0).k < done[i])
            ready[readies++] = heap_pop(&heaps[i]).group;
    }
    for (size_t i = 0; i < n; i++)
        if (next[i] < AT(s->groups, Group, i).waits_to) s->fallback = 1; /* a cycle */
out:
    if (heaps)
        for (size_t i = 0; i < n; i++) free(heaps[i].items);
    free(heaps);
    free(dep_of);
    free(done);
    free(next);
    free(ready);
    if (failed) PyErr_NoMemory();
    return failed;
}

/* ---- the answer ---- */

/* A scan of `len` bytes at `data` (`state` NULL: `string_highs`'s walk). */
static Scan new_scan(const unsigned char *data, size_t len, PyObject *state) {
    Scan s = {.data = data, .len = len, .state = state};
    s.groups.size = sizeof(Group);
    s.probes.size = sizeof(Probe);
    s.waits.size = sizeof(Wait);
    s.highs.size = sizeof(uint64_t);
    return s;
}

static void free_scan(Scan *s) {
    free(s->groups.items);
    free(s->probes.items);
    free(s->waits.items);
    free(s->highs.items);
}

/* A group's high clocks as a list of ints (`quick_check`'s `Summary.highs`). */
static PyObject *highs_list(Scan *s, Group *g) {
    PyObject *list = PyList_New((Py_ssize_t)(g->highs_to - g->highs_from));
    for (size_t h = g->highs_from; list != NULL && h < g->highs_to; h++) {
        PyObject *clock = PyLong_FromUnsignedLongLong(AT(s->highs, uint64_t, h));
        if (clock == NULL) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)(h - g->highs_from), clock);
    }
    return list;
}

/* A group's high clocks as one bytes object of native uint64s (`string_highs`). */
static PyObject *highs_bytes(Scan *s, Group *g) {
    const char *first = (const char *)&AT(s->highs, uint64_t, g->highs_from);
    size_t size = (g->highs_to - g->highs_from) * sizeof(uint64_t);
    return PyBytes_FromStringAndSize(first, (Py_ssize_t)size);
}

/* Each group's end clock into `ends`, and its high clocks (when it has any), as `as_highs`
 * makes them, into `highs`; -1 on failure (an exception set). */
static int ends_and_highs(Scan *s, PyObject *ends, PyObject *highs,
                          PyObject *(*as_highs)(Scan *, Group *)) {
    for (size_t i = 0; i < s->groups.len; i++) {
        Group *g = &AT(s->groups, Group, i);
        PyObject *client = PyLong_FromUnsignedLongLong(g->client);
        PyObject *end = PyLong_FromUnsignedLongLong(g->end);
        PyObject *clocks = NULL;
        int failed = client == NULL || end == NULL || PyDict_SetItem(ends, client, end);
        if (!failed && g->highs_to > g->highs_from) {
            clocks = as_highs(s, g);
            failed = clocks == NULL || PyDict_SetItem(highs, client, clocks);
        }
        Py_XDECREF(client);
        Py_XDECREF(end);
        Py_XDECREF(clocks);
        if (failed) return -1;
    }
    return 0;
}

/* `quick_check`'s answer: (ends, highs, refs, nested, deletes_at). */
static PyObject *answer(Scan *s) {
    PyObject *ends = PyDict_New(), *highs = PyDict_New(), *refs = PyFrozenSet_New(NULL);
    if (ends == NULL || highs == NULL || refs == NULL) goto fail;
    for (int ref = 0; ref < 32; ref++) {
        if (!(s->refs & (1u << ref))) continue;
        PyObject *value = PyLong_FromLong(ref);
        if (value == NULL || PySet_Add(refs, value)) {
            Py_XDECREF(value);
            goto fail;
        }
        Py_DECREF(value);
    }
    if (ends_and_highs(s, ends, highs, highs_list)) goto fail;
    return Py_BuildValue("(NNNOn)", ends, highs, refs, s->nested ? Py_True : Py_False,
                         (Py_ssize_t)s->deletes_at);
fail:
    Py_XDECREF(ends);
    Py_XDECREF(highs);
    Py_XDECREF(refs);
    return NULL;
}

static PyObject *quick_check(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer buffer;
    PyObject *state, *known_highs, *loaded_highs = NULL;
    if (!PyArg_ParseTuple(args, "y*O!O!|O!:quick_check", &buffer, &PyDict_Type, &state,
                          &PyDict_Type, &known_highs, &PyDict_Type, &loaded_highs))
        return NULL;
    Scan s = new_scan(buffer.buf, (size_t)buffer.len, state);
    PyObject *result = NULL;
    if (walk(&s)) goto out;
    if (!s.fallback) {
        if (no_split_pairs(&s, known_highs, loaded_highs) || (!s.fallback && integrates(&s)))
            goto out;
    }
    result = s.fallback ? Py_NewRef(Py_None) : answer(&s);
out:
    if (result == NULL && !PyErr_Occurred()) PyErr_NoMemory();
    free_scan(&s);
    PyBuffer_Release(&buffer);
    return result;
}

/* `string_highs`'s answer: (ends, highs, deletes_at), each group's high clocks as one bytes
 * object. */
static PyObject *highs_answer(Scan *s) {
    PyObject *ends = PyDict_New(), *highs = PyDict_New();
    if (ends == NULL || highs == NULL || ends_and_highs(s, ends, highs, highs_bytes)) {
        Py_XDECREF(ends);
        Py_XDECREF(highs);
        return NULL;
    }
    return Py_BuildValue("(NNn)", ends, highs, (Py_ssize_t)s->deletes_at);
}

/* The walk alone, no checks (`s.state` NULL: no Python object is touched, so the GIL is
 * released for it). Within a group clocks only grow, and a second group of one client
 * leaves the update to the full decoder: each client's highs come out sorted. */
static PyObject *string_highs(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *data; /* bytes, immutable: safe to read without the GIL (the call holds it) */
    if (!PyArg_ParseTuple(args, "S:string_highs", &data)) return NULL;
    Scan s = new_scan((const unsigned char *)PyBytes_AS_STRING(data),
                      (size_t)PyBytes_GET_SIZE(data), NULL);
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = walk(&s);
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (!failed) result = s.fallback ? Py_NewRef(Py_None) : highs_answer(&s);
    if (result == NULL && !PyErr_Occurred()) PyErr_NoMemory();
    free_scan(&s);
    return result;
}

/* list[at] as an unsigned integer; -1 (an error set) if it is not one. */
static int clock_at(PyObject *list, Py_ssize_t at, uint64_t *out) {
    *out = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(list, at));
    return (*out == (uint64_t)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* Whether [clock, end) lies inside one of the sorted ranges `starts`/`ends` (lists of
 * ints): 1 yes, 0 no, -1 on an error. */
static int range_kept(PyObject *starts, PyObject *ends, uint64_t clock, uint64_t end) {
    Py_ssize_t low = 0, high = PyList_GET_SIZE(starts);
    if (PyList_GET_SIZE(ends) != high) {
        PyErr_SetString(PyExc_ValueError, "starts and ends differ in length");
        return -1;
    }
    while (low < high) { /* bisect_right(starts, clock) */
        Py_ssize_t mid = low + (high - low) / 2;
        uint64_t start;
        if (clock_at(starts, mid, &start)) return -1;
        if (clock < start) high = mid;
        else low = mid + 1;
    }
    if (low == 0) return 0;
    uint64_t kept_end;
    if (clock_at(ends, low - 1, &kept_end)) return -1;
    return kept_end >= end;
}

/* The ranges of the delete set encoded at data[pos:] that the kept ranges do not cover
 * (`collab.yjs.deletes.unknown_deletes`), as (client, clock, length) tuples: no Python
 * object is made for a range already known. */
static PyObject *deletes_unknown(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *data, *starts_of, *ends_of;
    Py_ssize_t at;
    if (!PyArg_ParseTuple(args, "SnO!O!:deletes_unknown", &data, &at, &PyDict_Type, &starts_of,
                          &PyDict_Type, &ends_of))
        return NULL;
    size_t size = (size_t)PyBytes_GET_SIZE(data);
    if (at < 0 || (size_t)at > size) {
        PyErr_SetString(PyExc_ValueError, "no delete set there");
        return NULL;
    }
    PyObject *unknown = PyList_New(0);
    if (unknown == NULL) return NULL;
    Scan s = new_scan((const unsigned char *)PyBytes_AS_STRING(data), size, NULL);
    s.pos = (size_t)at;
    int failed = 0;
    uint64_t clients = read_count(&s, 2);
    for (uint64_t c = 0; c < clients && !failed && !s.fallback; c++) {
        uint64_t client = read_uint(&s), n = read_count(&s, 2);
        PyObject *starts = NULL, *ends = NULL;
        PyObject *key = PyLong_FromUnsignedLongLong(client);
        if (key == NULL) break;
        starts = PyDict_GetItemWithError(starts_of, key);
        if (starts != NULL) ends = PyDict_GetItemWithError(ends_of, key);
        Py_DECREF(key);
        if (PyErr_Occurred()) break;
        if ((starts && !PyList_Check(starts)) || (ends && !PyList_Check(ends))) {
            PyErr_SetString(PyExc_TypeError, "ranges must be lists");
            break;
        }
        for (uint64_t i = 0; i < n && !s.fallback; i++) {
            uint64_t clock = read_uint(&s), length = read_uint(&s);
            if (s.fallback || length == 0) continue;
            int kept = (starts && ends) ? range_kept(starts, ends, clock, clock + length) : 0;
            if (kept < 0) {
                failed = 1;
                break;
            }
            if (kept) continue;
            PyObject *range = Py_BuildValue("(KKK)", (unsigned long long)client,
                                            (unsigned long long)clock, (unsigned long long)length);
            if (range == NULL || PyList_Append(unknown, range)) {
                Py_XDECREF(range);
                failed = 1;
                break;
            }
            Py_DECREF(range);
        }
    }
    free_scan(&s);
    if (!PyErr_Occurred() && s.fallback) PyErr_SetString(PyExc_ValueError, "malformed delete set");
    if (PyErr_Occurred()) {
        Py_DECREF(unknown);
        return NULL;
    }
    return unknown;
}

/* Append `value` as a varUint to out[*used] (room for 10 bytes checked by the caller). */
static void put_uint(unsigned char *out, size_t *used, uint64_t value) {
    while (value >= 0x80) {
        out[(*used)++] = (unsigned char)(value & 0x7F) | 0x80;
        value >>= 7;
    }
    out[(*used)++] = (unsigned char)value;
}

/* `collab.yjs.deletes.DeleteSet.as_update`: the ranges (client -> sorted lists of starts,
 * and of exclusive ends) as a Yjs update of deletions alone, in the dicts' order. */
static PyObject *encode_deletes(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *starts_of, *ends_of;
    if (!PyArg_ParseTuple(args, "O!O!:encode_deletes", &PyDict_Type, &starts_of, &PyDict_Type,
                          &ends_of))
        return NULL;
    size_t room = 12, used = 0; /* 10 bytes a varUint, 2 a range at least: grown as needed */
    PyObject *key, *starts;
    Py_ssize_t at = 0;
    while (PyDict_Next(starts_of, &at, &key, &starts)) {
        if (!PyList_Check(starts)) {
            PyErr_SetString(PyExc_TypeError, "ranges must be lists");
            return NULL;
        }
        room += 20 + 20 * (size_t)PyList_GET_SIZE(starts);
    }
    unsigned char *out = malloc(room);
    if (out == NULL) return PyErr_NoMemory();
    out[used++] = 0; /* no structs */
    put_uint(out, &used, (uint64_t)PyDict_GET_SIZE(starts_of));
    at = 0;
    while (PyDict_Next(starts_of, &at, &key, &starts)) {
        PyObject *ends = PyDict_GetItemWithError(ends_of, key);
        uint64_t client = PyLong_AsUnsignedLongLong(key);
        if ((client == (uint64_t)-1 && PyErr_Occurred()) || ends == NULL || !PyList_Check(ends) ||
            PyList_GET_SIZE(ends) != PyList_GET_SIZE(starts)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "starts and ends differ");
            free(out);
            return NULL;
        }
        Py_ssize_t count = PyList_GET_SIZE(starts);
        put_uint(out, &used, client);
        put_uint(out, &used, (uint64_t)count);
        for (Py_ssize_t i = 0; i < count; i++) {
            uint64_t start, end;
            if (clock_at(starts, i, &start) || clock_at(ends, i, &end)) {
                free(out);
                return NULL;
            }
            put_uint(out, &used, start);
            put_uint(out, &used, end - start);
        }
    }
    PyObject *encoded = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)used);
    free(out);
    return encoded;
}

static PyMethodDef methods[] = {
    {"quick_check", quick_check, METH_VARARGS,
     "quick_check(data, state, known_highs, loaded_highs=None)"
     " -> (ends, highs, refs, nested) or None"},
    {"string_highs", string_highs, METH_VARARGS,
     "string_highs(data) -> (ends, highs, deletes_at) or None, with the GIL released for the "
     "walk"},
    {"encode_deletes", encode_deletes, METH_VARARGS,
     "encode_deletes(starts, ends) -> a Yjs update of the ranges' deletions alone"},
    {"deletes_unknown", deletes_unknown, METH_VARARGS,
     "deletes_unknown(data, pos, starts, ends) -> the (client, clock, length) ranges of the "
     "delete set at data[pos:] outside the kept ranges (client -> sorted starts, ends)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "collab.yjs._scan",
    .m_doc = "collab.yjs.scan.quick_check in C.", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scan(void) {
    PyObject *os = PyImport_ImportModule("os");
    PyObject *seed = os ? PyObject_CallMethod(os, "urandom", "i", (int)sizeof(hash_seed)) : NULL;
    Py_XDECREF(os);
    if (seed == NULL) return NULL;
    memcpy(&hash_seed, PyBytes_AS_STRING(seed), sizeof(hash_seed));
    Py_DECREF(seed);
    return PyModule_Create(&module);
}
