using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference;

/// <summary>
/// Cache-blocked GEMM in the GotoBLAS/BLIS layout: op(B) is packed in KC×NC blocks of NR-wide
/// micro-panels, op(A) in MC×KC blocks of MR-tall micro-panels (the transpose flags only change
/// how packing reads memory), and an MR×NR register-blocked FMA micro-kernel walks them. Each C
/// element is owned by exactly one task and accumulates its k terms in one fixed order (ascending
/// KC blocks, ascending p inside a block), so results never depend on the thread count.
/// </summary>
/// <summary>Which GEMM code runs: the automatic choice, or the packed blocked path always (the small path's tests compare against it).</summary>
internal enum GemmPath
{
    Auto,
    Blocked,
}

internal static unsafe class Gemm
{
    // The loops below are marked AggressiveOptimization: they are the whole cost of a GEMM, and
    // tier-0 code (which a short test run or a fresh process would otherwise execute for its first
    // ~30 calls) is several times slower. Dynamic PGO has nothing to add to them.

    // Below this many multiply-adds, forking costs more than it saves.
    private const long ParallelThreshold = 96L * 96 * 96;

    /// <summary>Rows of the micro-tile: 8 with AVX-512 (16 of the 32 zmm registers hold C), 6 with 256-bit vectors (12 of 16).</summary>
    private static int MR => Vector512.IsHardwareAccelerated ? 8 : 6;

    /// <summary>Columns of the micro-tile: two vectors.</summary>
    private static int NR<T>() => Vector512.IsHardwareAccelerated ? 2 * Vector512<T>.Count : 2 * Vector256<T>.Count;

    // A deep k block (512) means C is loaded and stored once per 512 terms. The 64 KiB B micro-panel
    // (KC·NR·sizeof(T)) streams from L2 as fast as the kernel consumes it on Zen 4, measured best
    // among 128..768; MC·KC of packed A (192 KiB float, 384 KiB double) stays in L2; KC·NC of packed
    // B lives in L3. The 256-bit fallback targets older cores with smaller caches.
    private static int KC<T>() => Vector512.IsHardwareAccelerated ? 512 : 256;

    private const int MCRows = 96;

    /// <summary>Columns of a packed B block: KC·NC·sizeof(T) = 2 MiB per thread, a slice of the shared L3.</summary>
    private static int NC<T>() => (2 << 20) / (KC<T>() * Unsafe.SizeOf<T>()) / NR<T>() * NR<T>();

    // Batched small products (the per-task matrices of a task-batched inner loop) are shared out, one
    // contiguous range of matrices per thread, from this many multiply-adds in all. At 128 Ki, 25 tasks'
    // [10, 40]·[40, 40] (400 Ki, ~15 µs) forked on the shared 2-core machine (load 8) gained no wall time
    // and cost 20-30 % more CPU per meta-step, so a fork needs a few times more work: 100 tasks, or wider
    // layers. Re-measured 2026-12-01 at load 11 with the products at 7-11 µs: forking them at 100 Ki made
    // them 2-3× slower in wall time.
    private const long SmallParallelThreshold = 1L << 20;

    public static void Run<T>(Parallelism threads, bool transposeA, bool transposeB, int batch, int m, int n, int k, double alpha,
        T* a, long strideA, T* b, long strideB, double beta, T* c, long strideC, GemmPath path = GemmPath.Auto)
        where T : unmanaged
    {
        if (m == 0 || n == 0 || batch == 0)
        {
            return;
        }
        long work = (long)m * n * Math.Max(k, 1);
        bool small = path == GemmPath.Auto && k > 0 && IsSmall<T>(m, n, k);
        // Independent outputs (strideC != 0) with enough matrices to share out: one fork over batches
        // beats a fork per matrix. With strideC == 0 every batch updates the same C, so order matters.
        bool parallelBatches = batch > 1 && strideC != 0 && threads.Enabled
            && (small ? work * batch >= SmallParallelThreshold
                : work * batch >= ParallelThreshold && (batch >= 2 * threads.MaxDegree || work < ParallelThreshold * 4));
        if (small)
        {
            // The small path loops over the matrices itself (one tile plan, one buffer lookup per call,
            // not per matrix); a fork hands each thread a contiguous range of them.
            T alphaT = FromDouble<T>(alpha), betaT = FromDouble<T>(beta);
            int mode = beta == 0 ? Overwrite : ScaleAndAdd;
            if (parallelBatches)
            {
                int parts = Math.Min(batch, threads.MaxDegree);
                nint sa0 = (nint)a, sb0 = (nint)b, sc0 = (nint)c;
                threads.For(0, parts, t =>
                {
                    int i0 = (int)((long)batch * t / parts), i1 = (int)((long)batch * (t + 1) / parts);
                    Small(transposeA, transposeB, i1 - i0, m, n, k, (T*)sa0 + i0 * strideA, strideA, (T*)sb0 + i0 * strideB, strideB,
                        (T*)sc0 + i0 * strideC, strideC, alphaT, betaT, mode);
                });
                return;
            }
            Small(transposeA, transposeB, batch, m, n, k, a, strideA, b, strideB, c, strideC, alphaT, betaT, mode);
            return;
        }
        if (parallelBatches)
        {
            nint pa = (nint)a, pb = (nint)b, pc = (nint)c;
            threads.For(0, batch, i => Single<T>(threads, transposeA, transposeB, m, n, k, alpha,
                (T*)pa + i * strideA, (T*)pb + i * strideB, beta, (T*)pc + i * strideC, parallel: false));
            return;
        }
        bool parallel = work >= ParallelThreshold && threads.Enabled;
        for (int i = 0; i < batch; i++)
        {
            Single(threads, transposeA, transposeB, m, n, k, alpha, a + i * strideA, b + i * strideB, beta, c + i * strideC, parallel);
        }
    }

    private static void Single<T>(Parallelism threads, bool transposeA, bool transposeB, int m, int n, int k, double alphaD,
        T* a, T* b, double betaD, T* c, bool parallel)
        where T : unmanaged
    {
        T alpha = FromDouble<T>(alphaD), beta = FromDouble<T>(betaD);
        if (k == 0)
        {
            ScaleC(c, m, n, beta, betaD == 0);
            return;
        }
        int mr = MR, nr = NR<T>(), kcMax = KC<T>(), ncMax = NC<T>();
        if (betaD != 0 && k > kcMax)
        {
            // Beyond one K block, β·C would join the first block's partial sum: the product goes to
            // scratch (from zero, blocked as with β = 0), then alpha·AB + β·C, so that C has the bits of
            // the product followed by an add (a linear layer's fused bias, a gradient added into its slot).
            T* scratch = (T*)NativeMemory.Alloc((nuint)m * (nuint)n, (nuint)sizeof(T));
            try
            {
                Single(threads, transposeA, transposeB, m, n, k, alphaD, a, b, 0.0, scratch, parallel);
                for (long i = 0; i < (long)m * n; i++)
                {
                    c[i] = Add(scratch[i], Mul(beta, c[i]));
                }
            }
            finally
            {
                NativeMemory.Free(scratch);
            }
            return;
        }
        int mcMax = MCRows / mr * mr;
        int rowPanels = (m + mr - 1) / mr;
        int rowChunks = 1, colChunks = 1;
        if (parallel)
        {
            // Row chunks of at most MC rows, as many as a multiple of the thread count so that they
            // balance; columns are split only when there are too few rows to go round. Every chunk
            // shares one packed B per k block, so packing is never duplicated across rows.
            int degree = threads.MaxDegree;
            int wanted = (m + mcMax - 1) / mcMax;
            wanted = (wanted + degree - 1) / degree * degree;
            rowChunks = Math.Min(rowPanels, wanted);
            if (rowChunks < degree)
            {
                colChunks = (2 * degree + rowChunks - 1) / rowChunks;
            }
        }
        // Small problems ask for small buffers: a [10, 40] × [40, 40] product never allocates megabytes.
        int ncUsed = Math.Min(ncMax, (n + nr - 1) / nr * nr);
        int kcUsed = Math.Min(kcMax, k);
        T* packedB = Buffers<T>.B(kcUsed * ncUsed);
        bool betaIsZero = betaD == 0;
        nint pa = (nint)a, pbuf = (nint)packedB, pcc = (nint)c;
        for (int jc = 0; jc < n; jc += ncMax)
        {
            int nc = Math.Min(ncMax, n - jc);
            int colPanels = (nc + nr - 1) / nr;
            int splits = Math.Min(colChunks, colPanels);
            for (int pc = 0; pc < k; pc += kcMax)
            {
                int kc = Math.Min(kcMax, k - pc);
                PackB(b, transposeB, n, k, pc, kc, jc, nc, nr, packedB);
                // First KC block: C = alpha·AB + beta·C; later blocks: C += alpha·AB.
                int mode = pc > 0 ? Accumulate : betaIsZero ? Overwrite : ScaleAndAdd;
                int tasks = rowChunks * splits;
                if (tasks == 1)
                {
                    Compute(a, transposeA, m, k, 0, m, pc, kc, packedB, 0, nc, c + jc, n, alpha, beta, mode);
                    continue;
                }
                int jcLocal = jc, pcLocal = pc, kcLocal = kc, ncLocal = nc, chunks = rowChunks;
                threads.For(0, tasks, t =>
                {
                    int ri = t / splits, ci = t % splits;
                    int i0 = (int)((long)rowPanels * ri / chunks) * mr, i1 = Math.Min(m, (int)((long)rowPanels * (ri + 1) / chunks) * mr);
                    int j0 = (int)((long)colPanels * ci / splits) * nr, j1 = Math.Min(ncLocal, (int)((long)colPanels * (ci + 1) / splits) * nr);
                    Compute((T*)pa, transposeA, m, k, i0, i1, pcLocal, kcLocal, (T*)pbuf, j0, j1, (T*)pcc + jcLocal, n, alpha, beta, mode);
                });
            }
        }
    }

    /// <summary>
    /// Rows [i0, i1) × packed-B columns [j0, j1) of one (jc, pc) block, on the calling thread with its
    /// own packed-A buffer; <paramref name="c"/> points at column jc.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Compute<T>(T* a, bool transposeA, int m, int k, int i0, int i1, int pc, int kc,
        T* packedB, int j0, int j1, T* c, int ldc, T alpha, T beta, int mode)
        where T : unmanaged
    {
        int mr = MR, nr = NR<T>();
        int mcMax = MCRows / mr * mr;
        T* packedA = Buffers<T>.A(Math.Min(mcMax, (i1 - i0 + mr - 1) / mr * mr) * kc);
        for (int ic = i0; ic < i1; ic += mcMax)
        {
            int mc = Math.Min(mcMax, i1 - ic);
            PackA(a, transposeA, m, k, ic, mc, pc, kc, mr, packedA);
            for (int jr = j0; jr < j1; jr += nr)
            {
                int nrEff = Math.Min(nr, j1 - jr);
                T* bp = packedB + (long)jr * kc;
                for (int ir = 0; ir < mc; ir += mr)
                {
                    int mrEff = Math.Min(mr, mc - ir);
                    T* cp = c + (long)(ic + ir) * ldc + jr;
                    if (Vector512.IsHardwareAccelerated)
                    {
                        Kernel512(packedA + (long)ir * kc, bp, kc, cp, ldc, mrEff, nrEff, alpha, beta, mode);
                    }
                    else
                    {
                        Kernel256(packedA + (long)ir * kc, bp, kc, cp, ldc, mrEff, nrEff, alpha, beta, mode);
                    }
                }
            }
        }
    }

    /// <summary>How a micro-kernel writes C: alpha·acc, alpha·acc + beta·C, or C + alpha·acc.</summary>
    internal const int Overwrite = 0, ScaleAndAdd = 1, Accumulate = 2;

    // Products whose three operands fit in L1 together (a [10, 40]·[40, 40] of an inner loop) skip
    // packing: packing op(A) into 8-row panels and op(B) into 32-wide panels computed 16×64 outputs
    // for a 10×40 C and cost more than the arithmetic. Up to k = KC the sums are the blocked path's
    // exactly: each C element is one FMA chain from zero in ascending p, then ·alpha (+ beta·C).
    private const int SmallElements = 6 * 1024;

    private static bool IsSmall<T>(int m, int n, int k) where T : unmanaged =>
        Vector512.IsHardwareAccelerated && Fma.IsSupported && k <= KC<T>()
        && (long)m * k + (long)k * n + (long)m * n <= SmallElements;

    /// <summary>Operands of a small-path chunk should stay in L1 together (48 KiB on current cores): 32 KiB of them.</summary>
    private const int ChunkBytes = 32 * 1024;

    /// <summary>
    /// C = alpha·op(A)·op(B) (+ beta·C) for <paramref name="batch"/> matrices without packing: op(A) is
    /// read in place (either layout; one element per FMA is broadcast), op(B) in place when it is
    /// row-major [k, n], else transposed into the thread's B buffer first (once when every matrix
    /// shares it, stride 0). C is cut into tiles of up to 8 rows (the rows shared out evenly, so a
    /// 10-row C is two 5-row tiles) × up to 3 vectors (the last one masked, so a 40-wide C is one tile
    /// column of 16 + 16 + 8 lanes): at most 24 accumulators stay in registers. A one-column product
    /// (a matrix-vector product, n = 1) runs as its transpose, a 1×m row over the vectors.
    /// The matrices go in chunks whose operands fit in L1 together, and each tile kernel walks the
    /// whole chunk: the tile plan, the mask and the calls are paid once per chunk, not per matrix,
    /// which was most of the cost of the 1-wide products of a task-batched MLP (25 × [10, 40]·[40, 1]).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Small<T>(bool transposeA, bool transposeB, int batch, int m, int n, int k,
        T* a, long strideA, T* b, long strideB, T* c, long strideC, T alpha, T beta, int mode)
        where T : unmanaged
    {
        // Layouts that put every element in the same place: op(A) [m, 1] or [1, k], op(B) [1, n] or [k, 1]
        // is the same vector stored either way, so its transpose flag costs nothing to drop.
        if (k == 1 || m == 1)
        {
            transposeA = false;
        }
        if (k == 1 || n == 1)
        {
            transposeB = false;
        }
        // The broadcast operand ("A": element (i, p) at a[i·rowStep + p·pStep]) and the vector operand
        // ("B": row-major [k, cols], stored transposed when transposeSrc).
        T* opA, src;
        long sa, ss, rowStep, pStep;
        int rows, cols;
        bool transposeSrc;
        if (n == 1 && m > 1)
        {
            // c[i] = Σ_p op(A)[i, p]·b[p] is the 1×m product bᵀ·op(A)ᵀ: op(B) (one column: b[p] whatever its
            // layout) is the broadcast row, op(A)ᵀ [k, m] (A itself when transposed, else A transposed)
            // supplies the vectors, and C [m, 1] is also C [1, m]. The same FMA chain per element (x·y = y·x).
            opA = b; sa = strideB; rowStep = 0; pStep = 1;
            src = a; ss = strideA; transposeSrc = !transposeA;
            rows = 1; cols = m;
        }
        else
        {
            opA = a; sa = strideA; rowStep = transposeA ? 1 : k; pStep = transposeA ? m : 1;
            src = b; ss = strideB; transposeSrc = transposeB;
            rows = m; cols = n;
        }
        // IsSmall bounds a matrix's operands to SmallElements, so a chunk holds at least one.
        int chunk = batch == 1 ? 1 : Math.Clamp(ChunkBytes / Unsafe.SizeOf<T>() / (m * k + k * n + m * n), 1, batch);
        long panel = (long)k * cols;
        T* buffer = null;
        if (transposeSrc)
        {
            if (ss == 0)
            {
                // One op(B) for every matrix: transposed once.
                buffer = Buffers<T>.B((int)panel);
                InterleaveRows(src, k, cols, k, buffer, cols);
                src = buffer;
                transposeSrc = false;
            }
            else
            {
                buffer = Buffers<T>.B((int)(chunk * panel));
            }
        }
        for (int i0 = 0; i0 < batch; i0 += chunk)
        {
            int count = Math.Min(chunk, batch - i0);
            T* vb = src + i0 * ss;
            long sv = ss, ldb = cols;
            if (transposeSrc && ss == panel)
            {
                // Back-to-back matrices [cols, k] are one [count·cols, k] matrix: one transpose into [k, count·cols]
                // keeps the 8×8 blocks going across matrix edges (a 10-row matrix alone leaves 2 rows to scalar
                // code), and matrix i reads columns [i·cols, (i + 1)·cols) of it.
                InterleaveRows(vb, k, count * cols, k, buffer, count * cols);
                vb = buffer;
                sv = cols;
                ldb = (long)count * cols;
            }
            else if (transposeSrc)
            {
                for (int i = 0; i < count; i++)
                {
                    InterleaveRows(vb + i * ss, k, cols, k, buffer + i * panel, cols);
                }
                vb = buffer;
                sv = panel;
            }
            Tiles(count, rows, cols, k, opA + i0 * sa, sa, rowStep, pStep, vb, sv, ldb, c + i0 * strideC, strideC, cols, alpha, beta, mode);
        }
    }

    /// <summary>
    /// For each of <paramref name="count"/> matrices (A, B and C advancing by their strides): C [m, n]
    /// (row stride ldc) op= alpha·A·B for A element (i, p) at a[i·rowStep + p·pStep] and row-major B [k, n] (row stride ldb).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tiles<T>(int count, int m, int n, int k, T* a, long strideA, long rowStep, long pStep, T* b, long strideB, long ldb,
        T* c, long strideC, long ldc, T alpha, T beta, int mode)
        where T : unmanaged
    {
        int w = Vector512<T>.Count;
        int tiles = (m + 7) / 8;
        int baseRows = m / tiles, extra = m % tiles;
        for (int j = 0; j < n; j += 3 * w)
        {
            int lanes = Math.Min(3 * w, n - j);
            int vectors = (lanes + w - 1) / w;
            int tail = lanes - (vectors - 1) * w;
            int i0 = 0;
            for (int t = 0; t < tiles; t++)
            {
                int rows = baseRows + (t < extra ? 1 : 0);
                var tile = new Tile<T>(count, a + i0 * rowStep, strideA, rowStep, pStep, b + j, strideB, ldb, k, c + i0 * ldc + j, strideC, ldc, alpha, beta, mode);
                switch (vectors)
                {
                    case 1:
                        Rows<T, V1>(rows, in tile, tail);
                        break;
                    case 2:
                        Rows<T, V2>(rows, in tile, tail);
                        break;
                    default:
                        Rows<T, V3>(rows, in tile, tail);
                        break;
                }
                i0 += rows;
            }
        }
    }

    /// <summary>The operands of one tile position across a chunk of matrices (passed by reference: a dozen arguments otherwise).</summary>
    private readonly struct Tile<T>(int count, T* a, long strideA, long rowStep, long pStep, T* b, long strideB, long ldb, int k,
        T* c, long strideC, long ldc, T alpha, T beta, int mode)
        where T : unmanaged
    {
        public readonly int Count = count, K = k, Mode = mode;
        public readonly T* A = a, B = b, C = c;
        public readonly long StrideA = strideA, RowStep = rowStep, PStep = pStep, StrideB = strideB, Ldb = ldb, StrideC = strideC, Ldc = ldc;
        public readonly T Alpha = alpha, Beta = beta;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rows<T, TV>(int rows, in Tile<T> tile, int tail)
        where T : unmanaged
        where TV : struct, ICount
    {
        switch (rows)
        {
            case 1: SmallTile<T, V1, TV>(in tile, tail); break;
            case 2: SmallTile<T, V2, TV>(in tile, tail); break;
            case 3: SmallTile<T, V3, TV>(in tile, tail); break;
            case 4: SmallTile<T, V4, TV>(in tile, tail); break;
            case 5: SmallTile<T, V5, TV>(in tile, tail); break;
            case 6: SmallTile<T, V6, TV>(in tile, tail); break;
            case 7: SmallTile<T, V7, TV>(in tile, tail); break;
            default: SmallTile<T, V8, TV>(in tile, tail); break;
        }
    }

    /// <summary>
    /// A compile-time count: the JIT specializes a generic method per struct argument, so `TR.Value > 3` folds away
    /// (the GEMM's small tiles and the direct convolution's tiles).
    /// </summary>
    internal interface ICount
    {
        static abstract int Value { get; }
    }

    internal struct V1 : ICount { public static int Value => 1; }
    internal struct V2 : ICount { public static int Value => 2; }
    internal struct V3 : ICount { public static int Value => 3; }
    internal struct V4 : ICount { public static int Value => 4; }
    internal struct V5 : ICount { public static int Value => 5; }
    internal struct V6 : ICount { public static int Value => 6; }
    internal struct V7 : ICount { public static int Value => 7; }
    internal struct V8 : ICount { public static int Value => 8; }

    /// <summary>Lanes [0, count) set.</summary>
    private static Vector512<T> LaneMask<T>(int count) where T : unmanaged =>
        Vector512.LessThan(Vector512<T>.Indices, Vector512.Create(FromDouble<T>(count)));

    /// <summary>
    /// A TR-row × TV-vector tile of C, for each matrix of the chunk in turn: every C element one FMA
    /// chain from zero in ascending p (the A element broadcast, a row of B as vectors, the last vector's
    /// lanes from <paramref name="tail"/> on neither read nor written). Consecutive matrices are
    /// independent, so the core overlaps one's FMA chains with the next one's when a tile is too small
    /// to hide the FMA latency by itself.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SmallTile<T, TR, TV>(in Tile<T> tile, int tail)
        where T : unmanaged
        where TR : struct, ICount
        where TV : struct, ICount
    {
        int k = tile.K, mode = tile.Mode;
        // Built here rather than passed in: a mask the JIT sees computed stays in a k register for the
        // whole kernel, where a Vector512 argument was converted (vpmovd2m, an FMA port) every iteration.
        var mask = LaneMask<T>(tail);
        long rowStep = tile.RowStep, pStep = tile.PStep, ldb = tile.Ldb, ldc = tile.Ldc;
        T alpha = tile.Alpha, beta = tile.Beta;
        long strideA = tile.StrideA, strideB = tile.StrideB, strideC = tile.StrideC;
        int w = Vector512<T>.Count;
        int rows = TR.Value, vecs = TV.Value;
        T* a = tile.A, b = tile.B, c = tile.C;
        for (int matrix = tile.Count; matrix > 0; matrix--, a += strideA, b += strideB, c += strideC)
        {
            T* a0 = a, a1 = a + rowStep, a2 = a + 2 * rowStep, a3 = a + 3 * rowStep;
            T* a4 = a + 4 * rowStep, a5 = a + 5 * rowStep, a6 = a + 6 * rowStep, a7 = a + 7 * rowStep;
            Vector512<T> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
            Vector512<T> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
            Vector512<T> c40 = default, c41 = default, c42 = default, c50 = default, c51 = default, c52 = default;
            Vector512<T> c60 = default, c61 = default, c62 = default, c70 = default, c71 = default, c72 = default;
            T* bp = b;
            long ap = 0;
            for (int p = 0; p < k; p++, bp += ldb, ap += pStep)
            {
                Vector512<T> b0 = vecs == 1 ? MaskedLoad(bp, mask) : Vector512.Load(bp);
                Vector512<T> b1 = vecs < 2 ? default : vecs == 2 ? MaskedLoad(bp + w, mask) : Vector512.Load(bp + w);
                Vector512<T> b2 = vecs < 3 ? default : MaskedLoad(bp + 2 * w, mask);
                Vector512<T> av = Vector512.Create(a0[ap]);
                c00 = Fma512(av, b0, c00);
                if (vecs > 1) { c01 = Fma512(av, b1, c01); }
                if (vecs > 2) { c02 = Fma512(av, b2, c02); }
                if (rows > 1)
                {
                    av = Vector512.Create(a1[ap]);
                    c10 = Fma512(av, b0, c10);
                    if (vecs > 1) { c11 = Fma512(av, b1, c11); }
                    if (vecs > 2) { c12 = Fma512(av, b2, c12); }
                }
                if (rows > 2)
                {
                    av = Vector512.Create(a2[ap]);
                    c20 = Fma512(av, b0, c20);
                    if (vecs > 1) { c21 = Fma512(av, b1, c21); }
                    if (vecs > 2) { c22 = Fma512(av, b2, c22); }
                }
                if (rows > 3)
                {
                    av = Vector512.Create(a3[ap]);
                    c30 = Fma512(av, b0, c30);
                    if (vecs > 1) { c31 = Fma512(av, b1, c31); }
                    if (vecs > 2) { c32 = Fma512(av, b2, c32); }
                }
                if (rows > 4)
                {
                    av = Vector512.Create(a4[ap]);
                    c40 = Fma512(av, b0, c40);
                    if (vecs > 1) { c41 = Fma512(av, b1, c41); }
                    if (vecs > 2) { c42 = Fma512(av, b2, c42); }
                }
                if (rows > 5)
                {
                    av = Vector512.Create(a5[ap]);
                    c50 = Fma512(av, b0, c50);
                    if (vecs > 1) { c51 = Fma512(av, b1, c51); }
                    if (vecs > 2) { c52 = Fma512(av, b2, c52); }
                }
                if (rows > 6)
                {
                    av = Vector512.Create(a6[ap]);
                    c60 = Fma512(av, b0, c60);
                    if (vecs > 1) { c61 = Fma512(av, b1, c61); }
                    if (vecs > 2) { c62 = Fma512(av, b2, c62); }
                }
                if (rows > 7)
                {
                    av = Vector512.Create(a7[ap]);
                    c70 = Fma512(av, b0, c70);
                    if (vecs > 1) { c71 = Fma512(av, b1, c71); }
                    if (vecs > 2) { c72 = Fma512(av, b2, c72); }
                }
            }
            if (mode == Overwrite)
            {
                var va = Vector512.Create(alpha);
                PutRow<T, TV>(c, w, c00 * va, c01 * va, c02 * va, mask);
                if (rows > 1) { PutRow<T, TV>(c + ldc, w, c10 * va, c11 * va, c12 * va, mask); }
                if (rows > 2) { PutRow<T, TV>(c + 2 * ldc, w, c20 * va, c21 * va, c22 * va, mask); }
                if (rows > 3) { PutRow<T, TV>(c + 3 * ldc, w, c30 * va, c31 * va, c32 * va, mask); }
                if (rows > 4) { PutRow<T, TV>(c + 4 * ldc, w, c40 * va, c41 * va, c42 * va, mask); }
                if (rows > 5) { PutRow<T, TV>(c + 5 * ldc, w, c50 * va, c51 * va, c52 * va, mask); }
                if (rows > 6) { PutRow<T, TV>(c + 6 * ldc, w, c60 * va, c61 * va, c62 * va, mask); }
                if (rows > 7) { PutRow<T, TV>(c + 7 * ldc, w, c70 * va, c71 * va, c72 * va, mask); }
                continue;
            }
            // Every C load of the tile before its first store: a row's masked last vector shares its 64 bytes
            // with the next row's first, and a load behind such a store waits for the store to retire (it
            // cannot be forwarded): with beta != 0 that stall tripled the cost of a 1-wide product.
            T* row0 = c;
            c00 = Finish<T, TV>(0, row0, c00, alpha, beta, mode, mask);
            if (vecs > 1) { c01 = Finish<T, TV>(1, row0 + w, c01, alpha, beta, mode, mask); }
            if (vecs > 2) { c02 = Finish<T, TV>(2, row0 + 2 * w, c02, alpha, beta, mode, mask); }
            if (rows > 1)
            {
                T* row1 = c + ldc;
                c10 = Finish<T, TV>(0, row1, c10, alpha, beta, mode, mask);
                if (vecs > 1) { c11 = Finish<T, TV>(1, row1 + w, c11, alpha, beta, mode, mask); }
                if (vecs > 2) { c12 = Finish<T, TV>(2, row1 + 2 * w, c12, alpha, beta, mode, mask); }
            }
            if (rows > 2)
            {
                T* row2 = c + 2 * ldc;
                c20 = Finish<T, TV>(0, row2, c20, alpha, beta, mode, mask);
                if (vecs > 1) { c21 = Finish<T, TV>(1, row2 + w, c21, alpha, beta, mode, mask); }
                if (vecs > 2) { c22 = Finish<T, TV>(2, row2 + 2 * w, c22, alpha, beta, mode, mask); }
            }
            if (rows > 3)
            {
                T* row3 = c + 3 * ldc;
                c30 = Finish<T, TV>(0, row3, c30, alpha, beta, mode, mask);
                if (vecs > 1) { c31 = Finish<T, TV>(1, row3 + w, c31, alpha, beta, mode, mask); }
                if (vecs > 2) { c32 = Finish<T, TV>(2, row3 + 2 * w, c32, alpha, beta, mode, mask); }
            }
            if (rows > 4)
            {
                T* row4 = c + 4 * ldc;
                c40 = Finish<T, TV>(0, row4, c40, alpha, beta, mode, mask);
                if (vecs > 1) { c41 = Finish<T, TV>(1, row4 + w, c41, alpha, beta, mode, mask); }
                if (vecs > 2) { c42 = Finish<T, TV>(2, row4 + 2 * w, c42, alpha, beta, mode, mask); }
            }
            if (rows > 5)
            {
                T* row5 = c + 5 * ldc;
                c50 = Finish<T, TV>(0, row5, c50, alpha, beta, mode, mask);
                if (vecs > 1) { c51 = Finish<T, TV>(1, row5 + w, c51, alpha, beta, mode, mask); }
                if (vecs > 2) { c52 = Finish<T, TV>(2, row5 + 2 * w, c52, alpha, beta, mode, mask); }
            }
            if (rows > 6)
            {
                T* row6 = c + 6 * ldc;
                c60 = Finish<T, TV>(0, row6, c60, alpha, beta, mode, mask);
                if (vecs > 1) { c61 = Finish<T, TV>(1, row6 + w, c61, alpha, beta, mode, mask); }
                if (vecs > 2) { c62 = Finish<T, TV>(2, row6 + 2 * w, c62, alpha, beta, mode, mask); }
            }
            if (rows > 7)
            {
                T* row7 = c + 7 * ldc;
                c70 = Finish<T, TV>(0, row7, c70, alpha, beta, mode, mask);
                if (vecs > 1) { c71 = Finish<T, TV>(1, row7 + w, c71, alpha, beta, mode, mask); }
                if (vecs > 2) { c72 = Finish<T, TV>(2, row7 + 2 * w, c72, alpha, beta, mode, mask); }
            }
            PutRow<T, TV>(c, w, c00, c01, c02, mask);
            if (rows > 1) { PutRow<T, TV>(c + ldc, w, c10, c11, c12, mask); }
            if (rows > 2) { PutRow<T, TV>(c + 2 * ldc, w, c20, c21, c22, mask); }
            if (rows > 3) { PutRow<T, TV>(c + 3 * ldc, w, c30, c31, c32, mask); }
            if (rows > 4) { PutRow<T, TV>(c + 4 * ldc, w, c40, c41, c42, mask); }
            if (rows > 5) { PutRow<T, TV>(c + 5 * ldc, w, c50, c51, c52, mask); }
            if (rows > 6) { PutRow<T, TV>(c + 6 * ldc, w, c60, c61, c62, mask); }
            if (rows > 7) { PutRow<T, TV>(c + 7 * ldc, w, c70, c71, c72, mask); }
        }
    }

    /// <summary>
    /// Vector <paramref name="v"/> of a tile row, finished: the blocked path's expression (alpha·acc, then
    /// C + that or that + beta·C, unfused), the row's last vector (v = TV − 1) read through <paramref name="mask"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Finish<T, TV>(int v, T* c, Vector512<T> acc, T alpha, T beta, int mode, Vector512<T> mask)
        where T : unmanaged
        where TV : struct, ICount
    {
        var r = acc * Vector512.Create(alpha);
        if (mode == Accumulate)
        {
            r = (v == TV.Value - 1 ? MaskedLoad(c, mask) : Vector512.Load(c)) + r;
        }
        else if (mode == ScaleAndAdd)
        {
            r += Vector512.Create(beta) * (v == TV.Value - 1 ? MaskedLoad(c, mask) : Vector512.Load(c));
        }
        return r;
    }

    /// <summary>Stores a tile row's TV vectors, the last one through <paramref name="mask"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PutRow<T, TV>(T* c, int w, Vector512<T> v0, Vector512<T> v1, Vector512<T> v2, Vector512<T> mask)
        where T : unmanaged
        where TV : struct, ICount
    {
        int vecs = TV.Value;
        if (vecs == 1)
        {
            MaskedStore(c, mask, v0);
            return;
        }
        v0.Store(c);
        if (vecs == 2)
        {
            MaskedStore(c + w, mask, v1);
            return;
        }
        v1.Store(c + w);
        MaskedStore(c + 2 * w, mask, v2);
    }

    /// <summary>The lanes of p that <paramref name="mask"/> selects, zero elsewhere (no read outside them); also the implicit-GEMM convolution's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<T> MaskedLoad<T>(T* p, Vector512<T> mask) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            return Avx512F.MaskLoad((float*)p, mask.AsSingle(), Vector512<float>.Zero).As<float, T>();
        }
        return Avx512F.MaskLoad((double*)p, mask.AsDouble(), Vector512<double>.Zero).As<double, T>();
    }

    /// <summary>Writes the lanes of value that <paramref name="mask"/> selects (no write outside them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void MaskedStore<T>(T* p, Vector512<T> mask, Vector512<T> value) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            Avx512F.MaskStore((float*)p, mask.AsSingle(), value.AsSingle());
        }
        else
        {
            Avx512F.MaskStore((double*)p, mask.AsDouble(), value.AsDouble());
        }
    }

    /// <summary>Packs rows [i0, i0+mc) × k-range [p0, p0+kc) of op(A) as MR-row panels, p-major, zero-padding the last panel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA<T>(T* a, bool transposeA, int m, int k, int i0, int mc, int p0, int kc, int mr, T* dst)
        where T : unmanaged
    {
        for (int ir = 0; ir < mc; ir += mr)
        {
            int rows = Math.Min(mr, mc - ir);
            T* panel = dst + (long)ir * kc;
            if (transposeA)
            {
                // A is stored [k, m]: the MR values of one p are contiguous.
                CopyRows(a + (long)p0 * m + i0 + ir, m, kc, rows, panel, mr);
            }
            else
            {
                // A is stored [m, k]: MR rows contiguous in p, to be interleaved.
                InterleaveRows(a + (long)(i0 + ir) * k + p0, k, rows, kc, panel, mr);
            }
        }
    }

    /// <summary>Packs k-range [p0, p0+kc) × columns [j0, j0+nc) of op(B) as NR-column panels, p-major, zero-padding the last panel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB<T>(T* b, bool transposeB, int n, int k, int p0, int kc, int j0, int nc, int nr, T* dst)
        where T : unmanaged
    {
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            T* panel = dst + (long)jr * kc;
            if (transposeB)
            {
                // B is stored [n, k]: NR rows contiguous in p, to be interleaved.
                InterleaveRows(b + (long)(j0 + jr) * k + p0, k, cols, kc, panel, nr);
            }
            else
            {
                // B is stored [k, n]: the NR values of one p are contiguous.
                CopyRows(b + (long)p0 * n + j0 + jr, n, kc, cols, panel, nr);
            }
        }
    }

    /// <summary>dst[p·width + r] = src[p·ld + r] for r &lt; count, 0 for count ≤ r &lt; width.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CopyRows<T>(T* src, long ld, int kc, int count, T* dst, int width) where T : unmanaged
    {
        // Rows are one or two vectors long: explicit vector moves beat a Span.CopyTo call per row.
        int w512 = Vector512<T>.Count, w256 = Vector256<T>.Count;
        for (int p = 0; p < kc; p++)
        {
            T* s = src + p * ld;
            T* d = dst + (long)p * width;
            int r = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; r + w512 <= count; r += w512)
                {
                    Vector512.Load(s + r).Store(d + r);
                }
            }
            for (; r + w256 <= count; r += w256)
            {
                Vector256.Load(s + r).Store(d + r);
            }
            for (; r < count; r++)
            {
                d[r] = s[r];
            }
            for (; r < width; r++)
            {
                d[r] = default;
            }
        }
    }

    /// <summary>
    /// dst[p·width + r] = src[r·ld + p] for r &lt; rows, 0 for rows ≤ r &lt; width: a transpose, done in
    /// 8×8 (float) or 4×4 (double) register blocks where AVX allows, since scalar strided stores
    /// made packing a fifth of a transposed GEMM's time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void InterleaveRows<T>(T* src, long ld, int rows, int kc, T* dst, int width) where T : unmanaged
    {
        int block = Avx.IsSupported ? 32 / Unsafe.SizeOf<T>() : int.MaxValue;
        int r0 = 0;
        for (; r0 + block <= rows; r0 += block)
        {
            int p = 0;
            for (; p + block <= kc; p += block)
            {
                Copying.TransposeBlock(ref Unsafe.AsRef<T>(src + r0 * ld + p), ld, ref Unsafe.AsRef<T>(dst + (long)p * width + r0), width);
            }
            for (; p < kc; p++)
            {
                for (int r = r0; r < r0 + block; r++)
                {
                    dst[(long)p * width + r] = src[r * ld + p];
                }
            }
        }
        for (int r = r0; r < width; r++)
        {
            if (r < rows)
            {
                T* s = src + r * ld;
                for (int p = 0; p < kc; p++)
                {
                    dst[(long)p * width + r] = s[p];
                }
            }
            else
            {
                for (int p = 0; p < kc; p++)
                {
                    dst[(long)p * width + r] = default;
                }
            }
        }
    }

    private static void ScaleC<T>(T* c, int m, int n, T beta, bool betaIsZero) where T : unmanaged
    {
        for (long i = 0; i < (long)m * n; i++)
        {
            c[i] = betaIsZero ? default : Mul(beta, c[i]);
        }
    }

    /// <summary>a·b + c with one rounding per lane (also the implicit-GEMM convolution's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<T> Fma512<T>(Vector512<T> a, Vector512<T> b, Vector512<T> c) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            return Avx512F.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        }
        return Avx512F.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<T> Fma256<T>(Vector256<T> a, Vector256<T> b, Vector256<T> c) where T : unmanaged
    {
        if (Fma.IsSupported)
        {
            if (typeof(T) == typeof(float))
            {
                return Fma.MultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
            }
            return Fma.MultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        }
        return a * b + c;
    }

    /// <summary>8 × (2·Vector512) micro-kernel: C tile (mr×nr valid) op= alpha · Σ_p A[:, p] B[p, :].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel512<T>(T* a, T* b, int kc, T* c, long ldc, int mr, int nr, T alpha, T beta, int mode)
        where T : unmanaged
    {
        int w = Vector512<T>.Count;
        // Allocated before the loop, as in Kernel256: a zeroing call while the accumulators are live makes the JIT spill them.
        T* tile = stackalloc T[8 * 2 * w];
        Vector512<T> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<T> c40 = default, c41 = default, c50 = default, c51 = default, c60 = default, c61 = default, c70 = default, c71 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + w);
            var av = Vector512.Create(a[0]);
            c00 = Fma512(av, b0, c00);
            c01 = Fma512(av, b1, c01);
            av = Vector512.Create(a[1]);
            c10 = Fma512(av, b0, c10);
            c11 = Fma512(av, b1, c11);
            av = Vector512.Create(a[2]);
            c20 = Fma512(av, b0, c20);
            c21 = Fma512(av, b1, c21);
            av = Vector512.Create(a[3]);
            c30 = Fma512(av, b0, c30);
            c31 = Fma512(av, b1, c31);
            av = Vector512.Create(a[4]);
            c40 = Fma512(av, b0, c40);
            c41 = Fma512(av, b1, c41);
            av = Vector512.Create(a[5]);
            c50 = Fma512(av, b0, c50);
            c51 = Fma512(av, b1, c51);
            av = Vector512.Create(a[6]);
            c60 = Fma512(av, b0, c60);
            c61 = Fma512(av, b1, c61);
            av = Vector512.Create(a[7]);
            c70 = Fma512(av, b0, c70);
            c71 = Fma512(av, b1, c71);
            a += 8;
            b += 2 * w;
        }
        if (mr == 8 && nr == 2 * w)
        {
            Store512(c, w, c00, c01, alpha, beta, mode);
            Store512(c + ldc, w, c10, c11, alpha, beta, mode);
            Store512(c + 2 * ldc, w, c20, c21, alpha, beta, mode);
            Store512(c + 3 * ldc, w, c30, c31, alpha, beta, mode);
            Store512(c + 4 * ldc, w, c40, c41, alpha, beta, mode);
            Store512(c + 5 * ldc, w, c50, c51, alpha, beta, mode);
            Store512(c + 6 * ldc, w, c60, c61, alpha, beta, mode);
            Store512(c + 7 * ldc, w, c70, c71, alpha, beta, mode);
            return;
        }
        int ld = 2 * w;
        c00.Store(tile); c01.Store(tile + w);
        c10.Store(tile + ld); c11.Store(tile + ld + w);
        c20.Store(tile + 2 * ld); c21.Store(tile + 2 * ld + w);
        c30.Store(tile + 3 * ld); c31.Store(tile + 3 * ld + w);
        c40.Store(tile + 4 * ld); c41.Store(tile + 4 * ld + w);
        c50.Store(tile + 5 * ld); c51.Store(tile + 5 * ld + w);
        c60.Store(tile + 6 * ld); c61.Store(tile + 6 * ld + w);
        c70.Store(tile + 7 * ld); c71.Store(tile + 7 * ld + w);
        StorePartial(tile, ld, c, ldc, mr, nr, alpha, beta, mode);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512<T>(T* c, int w, Vector512<T> acc0, Vector512<T> acc1, T alpha, T beta, int mode) where T : unmanaged
    {
        // Unfused on purpose: the scalar edge path computes the same expression, so a C element's value does not depend on its tile.
        var va = Vector512.Create(alpha);
        var r0 = acc0 * va;
        var r1 = acc1 * va;
        if (mode == Accumulate)
        {
            r0 = Vector512.Load(c) + r0;
            r1 = Vector512.Load(c + w) + r1;
        }
        else if (mode == ScaleAndAdd)
        {
            var vb = Vector512.Create(beta);
            r0 += vb * Vector512.Load(c);
            r1 += vb * Vector512.Load(c + w);
        }
        r0.Store(c);
        r1.Store(c + w);
    }

    /// <summary>6 × (2·Vector256) micro-kernel for machines without AVX-512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel256<T>(T* a, T* b, int kc, T* c, long ldc, int mr, int nr, T alpha, T beta, int mode)
        where T : unmanaged
    {
        int w = Vector256<T>.Count;
        // The tile is allocated before the loop: its zeroing is a call, and every vector register is caller-saved on
        // System V, so an allocation after the loop made the JIT spill all twelve accumulators at every step (4x slower).
        T* tile = stackalloc T[6 * 2 * w];
        Vector256<T> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<T> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + w);
            var av = Vector256.Create(a[0]);
            c00 = Fma256(av, b0, c00);
            c01 = Fma256(av, b1, c01);
            av = Vector256.Create(a[1]);
            c10 = Fma256(av, b0, c10);
            c11 = Fma256(av, b1, c11);
            av = Vector256.Create(a[2]);
            c20 = Fma256(av, b0, c20);
            c21 = Fma256(av, b1, c21);
            av = Vector256.Create(a[3]);
            c30 = Fma256(av, b0, c30);
            c31 = Fma256(av, b1, c31);
            av = Vector256.Create(a[4]);
            c40 = Fma256(av, b0, c40);
            c41 = Fma256(av, b1, c41);
            av = Vector256.Create(a[5]);
            c50 = Fma256(av, b0, c50);
            c51 = Fma256(av, b1, c51);
            a += 6;
            b += 2 * w;
        }
        int ld = 2 * w;
        c00.Store(tile); c01.Store(tile + w);
        c10.Store(tile + ld); c11.Store(tile + ld + w);
        c20.Store(tile + 2 * ld); c21.Store(tile + 2 * ld + w);
        c30.Store(tile + 3 * ld); c31.Store(tile + 3 * ld + w);
        c40.Store(tile + 4 * ld); c41.Store(tile + 4 * ld + w);
        c50.Store(tile + 5 * ld); c51.Store(tile + 5 * ld + w);
        StorePartial(tile, ld, c, ldc, mr, nr, alpha, beta, mode);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StorePartial<T>(T* tile, int ld, T* c, long ldc, int mr, int nr, T alpha, T beta, int mode) where T : unmanaged
    {
        for (int r = 0; r < mr; r++)
        {
            T* row = c + r * ldc;
            T* t = tile + r * ld;
            for (int j = 0; j < nr; j++)
            {
                T v = Mul(t[j], alpha);
                row[j] = mode switch
                {
                    Accumulate => Add(row[j], v),
                    ScaleAndAdd => Add(v, Mul(beta, row[j])),
                    _ => v,
                };
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Mul<T>(T x, T y) where T : unmanaged =>
        typeof(T) == typeof(float) ? (T)(object)((float)(object)x * (float)(object)y) : (T)(object)((double)(object)x * (double)(object)y);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static T Add<T>(T x, T y) where T : unmanaged =>
        typeof(T) == typeof(float) ? (T)(object)((float)(object)x + (float)(object)y) : (T)(object)((double)(object)x + (double)(object)y);

    internal static T FromDouble<T>(double v) where T : unmanaged =>
        typeof(T) == typeof(float) ? (T)(object)(float)v : (T)(object)v;

    /// <summary>Per-thread packing buffers: pinned (the pointers outlive any one statement) and 64-byte aligned.</summary>
    private static class Buffers<T> where T : unmanaged
    {
        [ThreadStatic]
        private static T[]? s_a;

        [ThreadStatic]
        private static T[]? s_b;

        public static T* A(int length) => Get(ref s_a, length);

        public static T* B(int length) => Get(ref s_b, length);

        private static T* Get(ref T[]? buffer, int length)
        {
            int pad = 64 / Unsafe.SizeOf<T>();
            if (buffer is null || buffer.Length < length + pad)
            {
                // Grow geometrically so a sequence of slightly larger problems does not reallocate each time.
                int size = Math.Max(length + pad, buffer is null ? 0 : (int)Math.Min(Array.MaxLength, 2L * buffer.Length));
                buffer = GC.AllocateUninitializedArray<T>(size, pinned: true);
            }
            nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
            nint aligned = (address + 63) & ~(nint)63;
            return (T*)aligned;
        }
    }
}
