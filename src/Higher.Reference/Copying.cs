using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference;

/// <summary>Strided copy, cast and fill.</summary>
internal static class Copying
{
    /// <summary>
    /// dst[dstOffset + Σ i_d·dstStrides_d] = src[srcOffset + Σ i_d·srcStrides_d] over <paramref name="shape"/>.
    /// Size-1 dimensions are dropped and dimensions contiguous in both operands merged, so plain
    /// copies and narrow/cat slices run as a few span copies; a broadcast inner dimension is a fill.
    /// <para>
    /// With <paramref name="threads"/> (distinct storages), a large copy into a contiguous destination is split into
    /// ranges of rows written in parallel: every element is written once, so the split cannot change a value.
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void StridedCopy<T>(ReadOnlySpan<T> src, long srcOffset, ReadOnlySpan<long> srcStrides,
        Span<T> dst, long dstOffset, ReadOnlySpan<long> dstStrides, Shape shape, Parallelism? threads = null)
        where T : unmanaged
    {
        var dims = shape.Dims;
        if (shape.Numel == 0)
        {
            return;
        }
        int cap = Math.Max(1, dims.Length);
        Span<long> size = cap <= 16 ? stackalloc long[cap] : new long[cap];
        Span<long> ss = cap <= 16 ? stackalloc long[cap] : new long[cap];
        Span<long> ds = cap <= 16 ? stackalloc long[cap] : new long[cap];
        int r = 0;
        for (int d = 0; d < dims.Length; d++)
        {
            if (dims[d] == 1)
            {
                continue;
            }
            if (r > 0 && ss[r - 1] == srcStrides[d] * dims[d] && ds[r - 1] == dstStrides[d] * dims[d])
            {
                size[r - 1] *= dims[d];
                ss[r - 1] = srcStrides[d];
                ds[r - 1] = dstStrides[d];
                continue;
            }
            size[r] = dims[d];
            ss[r] = srcStrides[d];
            ds[r] = dstStrides[d];
            r++;
        }
        if (r == 0)
        {
            dst[(int)dstOffset] = src[(int)srcOffset];
            return;
        }
        int n = (int)size[r - 1];
        long sInner = ss[r - 1], dInner = ds[r - 1];
        if (r >= 2 && dInner == 1 && sInner is not (0 or 1) && ss[r - 2] == 1)
        {
            // A transpose of the two inner dimensions: copy in square tiles so that both the strided
            // reads and the contiguous writes of one tile stay in L1.
            TransposeSlabs(src, srcOffset, dst, dstOffset, size[..r], ss[..r], ds[..r]);
            return;
        }
        long rows = shape.Numel / n;
        if (threads is { Enabled: true } && shape.Numel >= ParallelElements && rows >= 2 && Contiguous(size[..r], ds[..r]))
        {
            fixed (T* ps = src, pd = dst)
            {
                RowsParallel<T>(threads, (nint)ps, srcOffset, (nint)pd, dstOffset, size[..r].ToArray(), ss[..r].ToArray(), ds[..r].ToArray(), rows);
            }
            return;
        }
        fixed (T* ps = src, pd = dst)
        {
            CopyRows(ps, srcOffset, pd, dstOffset, size[..r], ss[..r], ds[..r], 0, rows);
        }
    }

    /// <summary>Elements from which a strided copy into a contiguous destination writes its rows in parallel.</summary>
    private const long ParallelElements = 1 << 18;

    /// <summary>Whether strides describe a row-major layout of the (merged) sizes, inner stride 1: no element written twice.</summary>
    private static bool Contiguous(ReadOnlySpan<long> size, ReadOnlySpan<long> strides)
    {
        long expected = 1;
        for (int d = size.Length - 1; d >= 0; d--)
        {
            if (strides[d] != expected)
            {
                return false;
            }
            expected *= size[d];
        }
        return true;
    }

    private static unsafe void RowsParallel<T>(Parallelism threads, nint src, long srcOffset, nint dst, long dstOffset, long[] size, long[] ss, long[] ds, long rows)
        where T : unmanaged
    {
        int chunks = (int)Math.Min(rows, 4L * threads.MaxDegree);
        threads.For(0, chunks, c => CopyRows((T*)src, srcOffset, (T*)dst, dstOffset, size, ss, ds, rows * c / chunks, rows * (c + 1) / chunks));
    }

    /// <summary>Rows [row0, row1) of a strided copy (a row: the innermost merged dimension), from offsets computed for row0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void CopyRows<T>(T* src, long so, T* dst, long dof, ReadOnlySpan<long> size, ReadOnlySpan<long> ss, ReadOnlySpan<long> ds,
        long row0, long row1)
        where T : unmanaged
    {
        int r = size.Length, n = (int)size[r - 1];
        long sInner = ss[r - 1], dInner = ds[r - 1];
        Span<long> index = r <= 16 ? stackalloc long[16] : new long[r];
        long rest = row0;
        for (int d = r - 2; d >= 0; d--)
        {
            index[d] = rest % size[d];
            rest /= size[d];
            so += index[d] * ss[d];
            dof += index[d] * ds[d];
        }
        for (long row = row0; row < row1; row++)
        {
            T* s = src + so;
            T* o = dst + dof;
            if (sInner == 1 && dInner == 1)
            {
                new ReadOnlySpan<T>(s, n).CopyTo(new Span<T>(o, n));
            }
            else if (sInner == 0 && dInner == 1)
            {
                new Span<T>(o, n).Fill(*s);
            }
            else
            {
                for (int i = 0; i < n; i++)
                {
                    o[i * dInner] = s[i * sInner];
                }
            }
            for (int d = r - 2; d >= 0; d--)
            {
                so += ss[d];
                dof += ds[d];
                if (++index[d] < size[d])
                {
                    break;
                }
                so -= ss[d] * size[d];
                dof -= ds[d] * size[d];
                index[d] = 0;
            }
        }
    }

    /// <summary>
    /// dst[j·ldd + i] = src[i·ld + j] for i &lt; rows, j &lt; cols: <see cref="TransposeBlock"/> over the full 8×8 (4×4
    /// double) blocks where AVX is there, float edges as masked blocks (<see cref="TransposePartial"/>), double edges one
    /// element at a time. The convolution's packs and stores use it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Transpose<T>(T* src, long ld, T* dst, long ldd, int rows, int cols)
        where T : unmanaged
    {
        int block = Avx.IsSupported && Unsafe.SizeOf<T>() is 4 or 8 ? 32 / Unsafe.SizeOf<T>() : 0;
        int rowsBlocked = block == 0 ? 0 : rows / block * block, colsBlocked = block == 0 ? 0 : cols / block * block;
        for (int i0 = 0; i0 < rowsBlocked; i0 += block)
        {
            for (int j0 = 0; j0 < colsBlocked; j0 += block)
            {
                TransposeBlock(ref Unsafe.AsRef<T>(src + i0 * ld + j0), ld, ref Unsafe.AsRef<T>(dst + j0 * ldd + i0), ldd);
            }
            if (block == 8 && colsBlocked < cols)
            {
                TransposePartial((float*)(src + i0 * ld + colsBlocked), ld, (float*)(dst + colsBlocked * ldd + i0), ldd, block, cols - colsBlocked);
                continue;
            }
            for (int i = i0; i < i0 + block; i++)
            {
                for (int j = colsBlocked; j < cols; j++)
                {
                    dst[j * ldd + i] = src[i * ld + j];
                }
            }
        }
        if (block == 8 && rowsBlocked < rows)
        {
            for (int j0 = 0; j0 < cols; j0 += block)
            {
                TransposePartial((float*)(src + rowsBlocked * ld + j0), ld, (float*)(dst + j0 * ldd + rowsBlocked), ldd, rows - rowsBlocked, Math.Min(block, cols - j0));
            }
            return;
        }
        for (int i = rowsBlocked; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                dst[j * ldd + i] = src[i * ld + j];
            }
        }
    }

    /// <summary>
    /// The float <see cref="TransposeBlock"/> of the top-left rows × cols (at most 8 × 8) of a block at an edge: masked
    /// loads of the rows there are (missing ones zero), masked stores of the columns; nothing outside is read or written.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void TransposePartial(float* src, long ld, float* dst, long ldd, int rows, int cols)
    {
        var colMask = Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(cols)).AsSingle();
        var rowMask = Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(rows)).AsSingle();
        var r0 = Avx.MaskLoad(src, colMask);
        var r1 = rows > 1 ? Avx.MaskLoad(src + ld, colMask) : default;
        var r2 = rows > 2 ? Avx.MaskLoad(src + 2 * ld, colMask) : default;
        var r3 = rows > 3 ? Avx.MaskLoad(src + 3 * ld, colMask) : default;
        var r4 = rows > 4 ? Avx.MaskLoad(src + 4 * ld, colMask) : default;
        var r5 = rows > 5 ? Avx.MaskLoad(src + 5 * ld, colMask) : default;
        var r6 = rows > 6 ? Avx.MaskLoad(src + 6 * ld, colMask) : default;
        var r7 = rows > 7 ? Avx.MaskLoad(src + 7 * ld, colMask) : default;
        Shuffle8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        Avx.MaskStore(dst, rowMask, r0);
        if (cols > 1) { Avx.MaskStore(dst + ldd, rowMask, r1); }
        if (cols > 2) { Avx.MaskStore(dst + 2 * ldd, rowMask, r2); }
        if (cols > 3) { Avx.MaskStore(dst + 3 * ldd, rowMask, r3); }
        if (cols > 4) { Avx.MaskStore(dst + 4 * ldd, rowMask, r4); }
        if (cols > 5) { Avx.MaskStore(dst + 5 * ldd, rowMask, r5); }
        if (cols > 6) { Avx.MaskStore(dst + 6 * ldd, rowMask, r6); }
        if (cols > 7) { Avx.MaskStore(dst + 7 * ldd, rowMask, r7); }
    }

    /// <summary>Rows r0..r7 of an 8×8 float block become its columns: unpacks, shuffles and lane permutes in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Shuffle8x8(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3,
        ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6, ref Vector256<float> r7)
    {
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        r0 = Avx.Permute2x128(u0, u4, 0x20);
        r1 = Avx.Permute2x128(u1, u5, 0x20);
        r2 = Avx.Permute2x128(u2, u6, 0x20);
        r3 = Avx.Permute2x128(u3, u7, 0x20);
        r4 = Avx.Permute2x128(u0, u4, 0x31);
        r5 = Avx.Permute2x128(u1, u5, 0x31);
        r6 = Avx.Permute2x128(u2, u6, 0x31);
        r7 = Avx.Permute2x128(u3, u7, 0x31);
    }

    private const int TransposeTile = 8;

    /// <summary>dst[i·dRow + j] = src[j·sCol + i] over rows [i0, i1) and columns [j0, j1), in small tiles.</summary>
    private static void TransposeScalar<T>(ref T src, long sCol, ref T dst, long dRow, int i0, int i1, int j0, int j1)
    {
        for (int ib = i0; ib < i1; ib += TransposeTile)
        {
            int ie = Math.Min(i1, ib + TransposeTile);
            for (int jb = j0; jb < j1; jb += TransposeTile)
            {
                int je = Math.Min(j1, jb + TransposeTile);
                for (int i = ib; i < ie; i++)
                {
                    ref T dRowRef = ref Unsafe.Add(ref dst, (nint)(i * dRow));
                    for (int j = jb; j < je; j++)
                    {
                        Unsafe.Add(ref dRowRef, j) = Unsafe.Add(ref src, (nint)(j * sCol + i));
                    }
                }
            }
        }
    }

    /// <summary>
    /// Transposes one 32-byte-wide square block of 4- or 8-byte elements with AVX shuffles: 8×8 floats
    /// or 4×4 doubles from src (row stride ld) to dst (row stride ldd). Shared with the GEMM's packing.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void TransposeBlock<T>(ref T src, long ld, ref T dst, long ldd)
    {
        if (Unsafe.SizeOf<T>() == 4)
        {
            var r0 = Vector256.LoadUnsafe(ref Unsafe.As<T, float>(ref src));
            var r1 = Vector256.LoadUnsafe(ref Unsafe.As<T, float>(ref Unsafe.Add(ref src, (nint)ld)));
            var r2 = Vector256.LoadUnsafe(ref Unsafe.As<T, float>(ref Unsafe.Add(ref src, (nint)(2 * ld))));
            var r3 = Vector256.LoadUnsafe(ref Unsafe.As<T, float>(ref Unsafe.Add(ref src, (nint)(3 * ld))));
            var r4 = Vector256.LoadUnsafe(ref Unsafe.As<T, float>(ref Unsafe.Add(ref src, (nint)(4 * ld))));
            var r5 = Vector256.LoadUnsafe(ref Unsafe.As<T, float>(ref Unsafe.Add(ref src, (nint)(5 * ld))));
            var r6 = Vector256.LoadUnsafe(ref Unsafe.As<T, float>(ref Unsafe.Add(ref src, (nint)(6 * ld))));
            var r7 = Vector256.LoadUnsafe(ref Unsafe.As<T, float>(ref Unsafe.Add(ref src, (nint)(7 * ld))));
            Shuffle8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
            ref float d = ref Unsafe.As<T, float>(ref dst);
            r0.StoreUnsafe(ref d);
            r1.StoreUnsafe(ref Unsafe.Add(ref d, (nint)ldd));
            r2.StoreUnsafe(ref Unsafe.Add(ref d, (nint)(2 * ldd)));
            r3.StoreUnsafe(ref Unsafe.Add(ref d, (nint)(3 * ldd)));
            r4.StoreUnsafe(ref Unsafe.Add(ref d, (nint)(4 * ldd)));
            r5.StoreUnsafe(ref Unsafe.Add(ref d, (nint)(5 * ldd)));
            r6.StoreUnsafe(ref Unsafe.Add(ref d, (nint)(6 * ldd)));
            r7.StoreUnsafe(ref Unsafe.Add(ref d, (nint)(7 * ldd)));
        }
        else
        {
            var r0 = Vector256.LoadUnsafe(ref Unsafe.As<T, double>(ref src));
            var r1 = Vector256.LoadUnsafe(ref Unsafe.As<T, double>(ref Unsafe.Add(ref src, (nint)ld)));
            var r2 = Vector256.LoadUnsafe(ref Unsafe.As<T, double>(ref Unsafe.Add(ref src, (nint)(2 * ld))));
            var r3 = Vector256.LoadUnsafe(ref Unsafe.As<T, double>(ref Unsafe.Add(ref src, (nint)(3 * ld))));
            var t0 = Avx.UnpackLow(r0, r1);
            var t1 = Avx.UnpackHigh(r0, r1);
            var t2 = Avx.UnpackLow(r2, r3);
            var t3 = Avx.UnpackHigh(r2, r3);
            ref double d = ref Unsafe.As<T, double>(ref dst);
            Avx.Permute2x128(t0, t2, 0x20).StoreUnsafe(ref d);
            Avx.Permute2x128(t1, t3, 0x20).StoreUnsafe(ref Unsafe.Add(ref d, (nint)ldd));
            Avx.Permute2x128(t0, t2, 0x31).StoreUnsafe(ref Unsafe.Add(ref d, (nint)(2 * ldd)));
            Avx.Permute2x128(t1, t3, 0x31).StoreUnsafe(ref Unsafe.Add(ref d, (nint)(3 * ldd)));
        }
    }

    /// <summary>For every index of the outer dimensions, copies the [rows, cols] slab whose source is column-major.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposeSlabs<T>(ReadOnlySpan<T> src, long srcOffset, Span<T> dst, long dstOffset,
        ReadOnlySpan<long> size, ReadOnlySpan<long> ss, ReadOnlySpan<long> ds)
    {
        int r = size.Length;
        int rows = (int)size[r - 2], cols = (int)size[r - 1];
        long sCol = ss[r - 1], dRow = ds[r - 2];
        long slabs = 1;
        for (int d = 0; d < r - 2; d++)
        {
            slabs *= size[d];
        }
        Span<long> index = stackalloc long[Math.Max(1, r - 2)];
        index.Clear();
        long so = srcOffset, dof = dstOffset;
        ref T s0 = ref MemoryMarshal.GetReference(src);
        ref T d0 = ref MemoryMarshal.GetReference(dst);
        int block = Avx.IsSupported && Unsafe.SizeOf<T>() is 4 or 8 ? 32 / Unsafe.SizeOf<T>() : 0;
        int rowsBlocked = block == 0 ? 0 : rows / block * block;
        int colsBlocked = block == 0 ? 0 : cols / block * block;
        for (long slab = 0; slab < slabs; slab++)
        {
            ref T sSlab = ref Unsafe.Add(ref s0, (nint)so);
            ref T dSlab = ref Unsafe.Add(ref d0, (nint)dof);
            // Register transposes of 8×8 (4-byte) or 4×4 (8-byte) blocks; a row stride of a power of
            // two maps every row of a wider scalar tile to the same L1 set, which this avoids.
            for (int i0 = 0; i0 < rowsBlocked; i0 += block)
            {
                for (int j0 = 0; j0 < colsBlocked; j0 += block)
                {
                    TransposeBlock(ref Unsafe.Add(ref sSlab, (nint)(j0 * sCol + i0)), sCol, ref Unsafe.Add(ref dSlab, (nint)(i0 * dRow + j0)), dRow);
                }
            }
            TransposeScalar(ref sSlab, sCol, ref dSlab, dRow, 0, rowsBlocked, colsBlocked, cols);
            TransposeScalar(ref sSlab, sCol, ref dSlab, dRow, rowsBlocked, rows, 0, cols);
            for (int d = r - 3; d >= 0; d--)
            {
                so += ss[d];
                dof += ds[d];
                if (++index[d] < size[d])
                {
                    break;
                }
                so -= ss[d] * size[d];
                dof -= ds[d] * size[d];
                index[d] = 0;
            }
        }
    }

    /// <summary>Converts every element; float to Int64 truncates toward zero (NaN to 0, saturating), to Bool is x != 0.</summary>
    public static void Cast(CpuStorage source, CpuStorage destination)
    {
        switch (source.DType, destination.DType)
        {
            case var (a, b) when a == b:
                source.AsBytes().CopyTo(destination.AsBytes());
                break;
            case (DType.Float32, DType.Float64):
                FloatToDouble(source.AsFloat32(), destination.AsFloat64());
                break;
            case (DType.Float64, DType.Float32):
                DoubleToFloat(source.AsFloat64(), destination.AsFloat32());
                break;
            case (DType.Float32, DType.Int64):
                Convert<float, long, FloatToInt64>(source.AsFloat32(), destination.AsInt64());
                break;
            case (DType.Float64, DType.Int64):
                Convert<double, long, DoubleToInt64>(source.AsFloat64(), destination.AsInt64());
                break;
            case (DType.Int64, DType.Float32):
                Convert<long, float, Int64ToFloat>(source.AsInt64(), destination.AsFloat32());
                break;
            case (DType.Int64, DType.Float64):
                Convert<long, double, Int64ToDouble>(source.AsInt64(), destination.AsFloat64());
                break;
            case (DType.Float32, DType.Bool):
                Convert<float, bool, FloatToBool>(source.AsFloat32(), destination.AsBool());
                break;
            case (DType.Float64, DType.Bool):
                Convert<double, bool, DoubleToBool>(source.AsFloat64(), destination.AsBool());
                break;
            case (DType.Int64, DType.Bool):
                Convert<long, bool, Int64ToBool>(source.AsInt64(), destination.AsBool());
                break;
            case (DType.Bool, DType.Float32):
                Convert<bool, float, BoolToFloat>(source.AsBool(), destination.AsFloat32());
                break;
            case (DType.Bool, DType.Float64):
                Convert<bool, double, BoolToDouble>(source.AsBool(), destination.AsFloat64());
                break;
            case (DType.Bool, DType.Int64):
                Convert<bool, long, BoolToInt64>(source.AsBool(), destination.AsInt64());
                break;
            default:
                throw new NotSupportedException($"Cast from {source.DType.Name()} to {destination.DType.Name()} is not supported by the reference backend.");
        }
    }

    /// <summary>One scalar conversion, as a struct so the loop below is specialized and inlined per pair.</summary>
    private interface IConverter<TFrom, TTo>
    {
        static abstract TTo Convert(TFrom value);
    }

    private readonly struct FloatToInt64 : IConverter<float, long>
    {
        public static long Convert(float value) => (long)value;
    }

    private readonly struct DoubleToInt64 : IConverter<double, long>
    {
        public static long Convert(double value) => (long)value;
    }

    private readonly struct Int64ToFloat : IConverter<long, float>
    {
        public static float Convert(long value) => value;
    }

    private readonly struct Int64ToDouble : IConverter<long, double>
    {
        public static double Convert(long value) => value;
    }

    private readonly struct FloatToBool : IConverter<float, bool>
    {
        public static bool Convert(float value) => value != 0;
    }

    private readonly struct DoubleToBool : IConverter<double, bool>
    {
        public static bool Convert(double value) => value != 0;
    }

    private readonly struct Int64ToBool : IConverter<long, bool>
    {
        public static bool Convert(long value) => value != 0;
    }

    private readonly struct BoolToFloat : IConverter<bool, float>
    {
        public static float Convert(bool value) => value ? 1f : 0f;
    }

    private readonly struct BoolToDouble : IConverter<bool, double>
    {
        public static double Convert(bool value) => value ? 1.0 : 0.0;
    }

    private readonly struct BoolToInt64 : IConverter<bool, long>
    {
        public static long Convert(bool value) => value ? 1L : 0L;
    }

    private static void Convert<TFrom, TTo, TConverter>(ReadOnlySpan<TFrom> src, Span<TTo> dst)
        where TConverter : struct, IConverter<TFrom, TTo>
    {
        for (int i = 0; i < src.Length; i++)
        {
            dst[i] = TConverter.Convert(src[i]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FloatToDouble(ReadOnlySpan<float> src, Span<double> dst)
    {
        int i = 0;
        ref float s = ref MemoryMarshal.GetReference(src);
        ref double d = ref MemoryMarshal.GetReference(dst);
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= src.Length - 16; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref s, (nuint)i));
                lo.StoreUnsafe(ref d, (nuint)i);
                hi.StoreUnsafe(ref d, (nuint)(i + 8));
            }
        }
        for (; i < src.Length; i++)
        {
            Unsafe.Add(ref d, i) = Unsafe.Add(ref s, i);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DoubleToFloat(ReadOnlySpan<double> src, Span<float> dst)
    {
        int i = 0;
        ref double s = ref MemoryMarshal.GetReference(src);
        ref float d = ref MemoryMarshal.GetReference(dst);
        if (Vector512.IsHardwareAccelerated)
        {
            // Narrow rounds to nearest even exactly like the scalar conversion.
            for (; i <= src.Length - 16; i += 16)
            {
                Vector512.Narrow(Vector512.LoadUnsafe(ref s, (nuint)i), Vector512.LoadUnsafe(ref s, (nuint)(i + 8))).StoreUnsafe(ref d, (nuint)i);
            }
        }
        for (; i < src.Length; i++)
        {
            Unsafe.Add(ref d, i) = (float)Unsafe.Add(ref s, i);
        }
    }

    /// <summary>Sets every element to value converted to the dtype (Int64 truncates, Bool is value != 0).</summary>
    public static void Fill(CpuStorage destination, double value)
    {
        switch (destination.DType)
        {
            case DType.Float32:
                destination.AsFloat32().Fill((float)value);
                break;
            case DType.Float64:
                destination.AsFloat64().Fill(value);
                break;
            case DType.Int64:
                destination.AsInt64().Fill((long)value);
                break;
            default:
                destination.AsBool().Fill(value != 0);
                break;
        }
    }
}
