/* Strip ANSI CSI sequences and GitLab section markers from a log block, without the GIL.
 *
 * Why by hand: no maintained library strips terminal escapes at C speed while releasing the
 * GIL, and the cleaning was the half of the rules engine's pass that could not overlap with
 * Hyperscan (which releases the GIL) on the other core. This mirrors cleaning._ESCAPES exactly:
 *
 *   ESC "[0Ksection_" ("start"|"end") ":" DIGIT+ ":" NAME+ ( "[" [^]\r\n]* "]" )? "\r"?
 *   | ESC "[" [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]
 *
 * and gives up (returns None) on any other escape, so the Python path handles the rare cases
 * (OSC, lone ESC, unterminated CSI) and the results are identical either way.
 *
 * clean(buffer) -> None | (bytes text, [(offset, "start"|"end", name)], newline_count)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct { Py_ssize_t offset; int start; Py_ssize_t name_at, name_len; } Event;

static int is_name(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

/* Length of a section marker at p (p[0] == ESC), or 0. */
static Py_ssize_t marker(const unsigned char *p, Py_ssize_t n, int *start, Py_ssize_t *name_at,
                         Py_ssize_t *name_len) {
    static const char head[] = "\x1b[0Ksection_";
    Py_ssize_t i = sizeof(head) - 1;
    if (n < i || memcmp(p, head, i) != 0) return 0;
    if (n - i >= 6 && memcmp(p + i, "start:", 6) == 0) { *start = 1; i += 6; }
    else if (n - i >= 4 && memcmp(p + i, "end:", 4) == 0) { *start = 0; i += 4; }
    else return 0;
    Py_ssize_t d = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    if (i == d || i >= n || p[i] != ':') return 0;
    i++;
    *name_at = i;
    while (i < n && is_name(p[i])) i++;
    if (i == *name_at) return 0;
    *name_len = i - *name_at;
    if (i < n && p[i] == '[') {
        Py_ssize_t j = i + 1;
        while (j < n && p[j] != ']' && p[j] != '\r' && p[j] != '\n') j++;
        if (j < n && p[j] == ']') i = j + 1;
    }
    if (i < n && p[i] == '\r') i++;
    return i;
}

/* Length of a CSI sequence at p (p[0] == ESC), or 0 when it is not a complete one. */
static Py_ssize_t csi(const unsigned char *p, Py_ssize_t n) {
    if (n < 3 || p[1] != '[') return 0;
    Py_ssize_t i = 2;
    while (i < n && p[i] >= 0x30 && p[i] <= 0x3f) i++;
    while (i < n && p[i] >= 0x20 && p[i] <= 0x2f) i++;
    if (i < n && p[i] >= 0x40 && p[i] <= 0x7e) return i + 1;
    return 0;
}

static PyObject *clean(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *in = view.buf;
    Py_ssize_t n = view.len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL) { PyBuffer_Release(&view); return NULL; }
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    Py_ssize_t cap = 16, count = 0, w = 0, newlines = 0;
    Event *events = PyMem_RawMalloc(cap * sizeof(Event));
    int failed = events == NULL ? -1 : 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    while (!failed && i < n) {
        const unsigned char *esc = memchr(in + i, 0x1b, n - i);
        Py_ssize_t stop = esc ? esc - in : n;
        memcpy(o + w, in + i, stop - i);
        for (const unsigned char *q = in + i; (q = memchr(q, '\n', (in + stop) - q)); q++)
            newlines++;
        w += stop - i;
        i = stop;
        if (!esc) break;
        int start = 0;
        Py_ssize_t name_at = 0, name_len = 0;
        Py_ssize_t len = marker(in + i, n - i, &start, &name_at, &name_len);
        if (len) {
            if (count == cap) {
                Event *grown = PyMem_RawRealloc(events, 2 * cap * sizeof(Event));
                if (grown == NULL) { failed = -1; break; }
                events = grown;
                cap *= 2;
            }
            events[count++] = (Event){w, start, i + name_at, name_len};
        } else if (!(len = csi(in + i, n - i))) {
            failed = 1;  /* another kind of escape: leave the block to the Python path */
            break;
        }
        i += len;
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (failed == -1) {
        PyErr_NoMemory();
    } else if (failed == 1) {
        result = Py_NewRef(Py_None);
    } else if (_PyBytes_Resize(&out, w) == 0) {
        PyObject *list = PyList_New(count);
        for (Py_ssize_t k = 0; list && k < count; k++) {
            PyObject *ev = Py_BuildValue("(nsN)", events[k].offset, events[k].start ? "start" : "end",
                                         PyUnicode_DecodeASCII((const char *)in + events[k].name_at,
                                                               events[k].name_len, "replace"));
            if (ev == NULL) { Py_CLEAR(list); break; }
            PyList_SET_ITEM(list, k, ev);
        }
        if (list) result = Py_BuildValue("(ONn)", out, list, newlines);
    }
    Py_XDECREF(out);
    PyMem_RawFree(events);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"clean", clean, METH_O, "clean(buffer) -> None | (text, events, newlines)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastclean", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastclean(void) { return PyModule_Create(&module); }
