# Graph colouring for sparse derivatives, free of any tape: greedy
# distance-2 colourings of the column intersection graph (Jacobians), star
# colouring of a symmetric pattern (Hessians) and the plans that recover the
# entries from the compressed products. wengert.sparsity drives them on the
# patterns _sparsity.pyx computes.
from libc.stdint cimport int32_t, int64_t

import numpy as np
cimport numpy as cnp

from wengert._types cimport index_t

cnp.import_array()


def distance2_degrees(const int64_t[::1] vptr, const index_t[::1] vidx,
                      const int64_t[::1] nptr, const index_t[::1] nidx):
    """For each vertex (a Jacobian column), the number of other vertices
    sharing a net (a row) with it: its degree in the column intersection
    graph. vptr/vidx list each vertex's nets, nptr/nidx each net's vertices."""
    cdef Py_ssize_t n = vptr.shape[0] - 1, v, k, l, x, d
    degrees = np.zeros(n, dtype=np.int64)
    cdef int64_t[::1] deg = degrees
    mark_a = np.full(n + 1, -1, dtype=np.int64)
    cdef int64_t[::1] mark = mark_a
    with nogil:
        for v in range(n):
            d = 0
            mark[v] = v
            for k in range(vptr[v], vptr[v + 1]):
                l = vidx[k]
                for x in range(nptr[l], nptr[l + 1]):
                    if mark[nidx[x]] != v:
                        mark[nidx[x]] = v
                        d += 1
            deg[v] = d
    return degrees


def partial_distance2_colouring(const int64_t[::1] vptr, const index_t[::1] vidx,
                                const int64_t[::1] nptr, const index_t[::1] nidx,
                                const int64_t[::1] order):
    """Greedy colouring of the vertices in ``order`` (smallest free colour)
    such that two vertices sharing a net never share a colour: a distance-1
    colouring of the column intersection graph, without building it
    (Gebremedhin, Manne & Pothen 2005, Algorithm 3.2)."""
    cdef Py_ssize_t n = vptr.shape[0] - 1, i, v, k, l, x, c
    colours_a = np.full(n, -1, dtype=np.int32)
    cdef int32_t[::1] colour = colours_a
    forbidden_a = np.full(n + 1, -1, dtype=np.int64)
    cdef int64_t[::1] forbidden = forbidden_a
    with nogil:
        for i in range(n):
            v = order[i]
            for k in range(vptr[v], vptr[v + 1]):
                l = vidx[k]
                for x in range(nptr[l], nptr[l + 1]):
                    c = colour[nidx[x]]
                    if c >= 0:
                        forbidden[c] = v
            c = 0
            while forbidden[c] == v:
                c += 1
            colour[v] = <int32_t>c
    return colours_a


def mirror_positions(const int64_t[::1] ptr, const index_t[::1] idx):
    """For a structurally symmetric CSR pattern with sorted rows, the
    position of entry (j, i) for every entry (i, j), in O(nnz)."""
    cdef Py_ssize_t n = ptr.shape[0] - 1, i, k, j
    mate_a = np.empty(idx.shape[0], dtype=np.int64)
    cdef int64_t[::1] mate = mate_a
    nxt_a = np.asarray(ptr[:n]).copy()
    cdef int64_t[::1] nxt = nxt_a
    with nogil:
        # Rows are visited in increasing i, so the entries (j, i) of row j
        # are met in increasing column order: exactly their storage order.
        for i in range(n):
            for k in range(ptr[i], ptr[i + 1]):
                j = idx[k]
                mate[k] = nxt[j]
                nxt[j] += 1
    return mate_a


ctypedef struct Star:
    const int64_t* ptr
    const index_t* idx
    const int64_t* mate
    int32_t* colour
    int64_t* forbidden     # forbidden[c] == v: colour c is not allowed for v
    int64_t* fn_v
    int64_t* fn_w
    int64_t* fn_e
    int64_t* treated
    int64_t* star          # edge (its lower position) -> star
    int64_t* hub           # star -> hub vertex, -1 while it has one edge
    int64_t* leaf_head     # vertex -> first entry of its list of hubs
    int64_t* leaf_next
    int64_t* leaf_hub
    Py_ssize_t n_stars
    Py_ssize_t n_leaves
    Py_ssize_t cap_leaves


cdef inline Py_ssize_t _edge(const Star* g, Py_ssize_t k) noexcept nogil:
    return k if k < g.mate[k] else g.mate[k]


cdef inline void _treat(Star* g, Py_ssize_t q, Py_ssize_t v) noexcept nogil:
    """Forbid for v the colours of every coloured neighbour of q."""
    cdef Py_ssize_t k, c
    for k in range(g.ptr[q], g.ptr[q + 1]):
        c = g.colour[g.idx[k]]
        if c >= 0:
            g.forbidden[c] = v
    g.treated[q] = v


cdef inline void _add_leaf(Star* g, Py_ssize_t leaf, Py_ssize_t h) noexcept nogil:
    cdef Py_ssize_t e = g.n_leaves
    if e >= g.cap_leaves:
        return      # cannot happen: at most two entries per edge
    g.leaf_hub[e] = h
    g.leaf_next[e] = g.leaf_head[leaf]
    g.leaf_head[leaf] = e
    g.n_leaves = e + 1


cdef void _star_colour_vertex(Star* g, Py_ssize_t v) noexcept nogil:
    cdef Py_ssize_t k, kk, w, x, c, cw, q, e, s
    cdef bint found
    for k in range(g.ptr[v], g.ptr[v + 1]):
        w = g.idx[k]
        cw = g.colour[w]
        if cw < 0:
            continue
        g.forbidden[cw] = v
        if g.fn_v[cw] == v:
            # Two neighbours q, w of one colour: v will be their hub, so no
            # neighbour of q or w may take v's colour.
            q = g.fn_w[cw]
            if g.treated[q] != v:
                _treat(g, q, v)
            _treat(g, w, v)
        else:
            g.fn_v[cw] = v
            g.fn_w[cw] = w
            g.fn_e[cw] = _edge(g, k)
            # w is a leaf of a star with hub h: h's colour for v would make
            # the path h - w - v - ... two-coloured.
            e = g.leaf_head[w]
            while e >= 0:
                g.forbidden[g.colour[g.leaf_hub[e]]] = v
                e = g.leaf_next[e]
    c = 0
    while g.forbidden[c] == v:
        c += 1
    g.colour[v] = <int32_t>c
    # Place each new edge v - w in a two-coloured star.
    for k in range(g.ptr[v], g.ptr[v + 1]):
        w = g.idx[k]
        cw = g.colour[w]
        if cw < 0:
            continue
        e = _edge(g, k)
        found = False
        for kk in range(g.ptr[w], g.ptr[w + 1]):
            x = g.idx[kk]
            if x != v and g.colour[x] == c:
                # v joins the star of edge w - x, whose hub is w.
                s = g.star[_edge(g, kk)]
                if g.hub[s] < 0:
                    g.hub[s] = w
                    _add_leaf(g, x, w)
                g.star[e] = s
                _add_leaf(g, v, w)
                found = True
                break
        if found:
            continue
        q = g.fn_w[cw]
        if g.fn_v[cw] == v and q != w:
            # v has two neighbours of colour cw: v is the hub.
            s = g.star[g.fn_e[cw]]
            if g.hub[s] < 0:
                g.hub[s] = v
                _add_leaf(g, q, v)
            g.star[e] = s
            _add_leaf(g, w, v)
        else:
            g.star[e] = g.n_stars       # a new star of one edge
            g.n_stars += 1


def star_colouring(const int64_t[::1] ptr_v, const index_t[::1] idx_v,
                   const int64_t[::1] mate_v, const int64_t[::1] order):
    """Greedy star colouring of an adjacency graph (symmetric CSR without
    the diagonal, ``mate`` from :func:`mirror_positions`): a distance-1
    colouring in which every path on four vertices uses at least three
    colours, so every Hessian entry can be read directly from the compressed
    product. Gebremedhin, Tarafdar, Manne & Pothen (2007), Algorithm 4.1,
    which keeps the two-coloured stars; here each vertex also lists the hubs
    of the stars it is a leaf of, so the test "is w a leaf of a star?" costs
    those stars rather than w's degree (an arrowhead stays O(nnz))."""
    cdef Py_ssize_t n = ptr_v.shape[0] - 1, nnz = idx_v.shape[0]
    colours_a = np.full(n, -1, dtype=np.int32)
    # Per colour: (v, w, edge) of the first neighbour w of that colour met
    # while colouring v.
    work_a = np.full((7, n + 1), -1, dtype=np.int64)
    edges_a = np.full((2, nnz + 1), -1, dtype=np.int64)
    leaves_a = np.full((2, nnz + 2), -1, dtype=np.int64)
    cdef int64_t[:, ::1] work = work_a
    cdef int64_t[:, ::1] edges = edges_a
    cdef int64_t[:, ::1] leaves = leaves_a
    cdef int32_t[::1] colour_v = colours_a
    cdef Star g
    g.ptr = &ptr_v[0]
    g.idx = &idx_v[0] if nnz else NULL
    g.mate = &mate_v[0] if nnz else NULL
    g.colour = &colour_v[0] if n else NULL
    g.forbidden = &work[0, 0]
    g.fn_v = &work[1, 0]
    g.fn_w = &work[2, 0]
    g.fn_e = &work[3, 0]
    g.treated = &work[4, 0]
    g.leaf_head = &work[5, 0]
    g.star = &edges[0, 0]
    g.hub = &edges[1, 0]
    g.leaf_next = &leaves[0, 0]
    g.leaf_hub = &leaves[1, 0]
    g.n_stars = 0
    g.n_leaves = 0
    g.cap_leaves = nnz + 2
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            _star_colour_vertex(&g, order[i])
    return colours_a


def direct_recovery(const int64_t[::1] ptr, const index_t[::1] idx,
                    const int32_t[::1] colour, Py_ssize_t n_colours, bint symmetric):
    """Where each pattern entry (i, j) sits in the compressed product
    C = A @ S (flat, row-major, C of shape (n, n_colours)): at
    (i, colour[j]) when no other column of row i has j's colour, else (for a
    symmetric A) at (j, colour[i]). Returns the flat positions, or -1 - k
    for the first entry k that neither place isolates (an invalid colouring)."""
    cdef Py_ssize_t n = ptr.shape[0] - 1, nnz = idx.shape[0], i, k, c, j, bad = -1
    source_a = np.empty(nnz, dtype=np.int64)
    cdef int64_t[::1] source = source_a
    cdef int64_t[::1] stamp = np.full(n_colours + 1, -1, dtype=np.int64)
    cdef int64_t[::1] count = np.zeros(n_colours + 1, dtype=np.int64)
    cdef int64_t[::1] mate
    if symmetric:
        mate = mirror_positions(ptr, idx)
    with nogil:
        for i in range(n):
            for k in range(ptr[i], ptr[i + 1]):
                c = colour[idx[k]]
                if stamp[c] != i:
                    stamp[c] = i
                    count[c] = 0
                count[c] += 1
            for k in range(ptr[i], ptr[i + 1]):
                c = colour[idx[k]]
                source[k] = i * n_colours + c if count[c] == 1 else -1
        for k in range(nnz):
            if source[k] < 0 and (not symmetric or source[mate[k]] < 0):
                bad = k
                break
    if bad >= 0:
        return -1 - bad
    with nogil:
        # Entries that their own row does not isolate: read at the mirror.
        for i in range(n):
            for k in range(ptr[i], ptr[i + 1]):
                if source[k] < 0:
                    j = idx[k]
                    source[k] = j * n_colours + colour[i]
    return source_a
