using System.Runtime.InteropServices;
using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference.Elementwise;

/// <summary>
/// One elementwise function y = f(a, b) with a scalar body and, when <see cref="Vectorizable"/>,
/// vector bodies bitwise equal to it lane by lane.
/// </summary>
internal interface IBinaryOperator<T> where T : unmanaged
{
    static abstract bool Vectorizable { get; }

    T Invoke(T a, T b);

    Vector256<T> Invoke(Vector256<T> a, Vector256<T> b);

    Vector512<T> Invoke(Vector512<T> a, Vector512<T> b);
}

/// <summary>y = a + b.</summary>
internal readonly struct AddOperator<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T a, T b) => a + b;

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => a + b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => a + b;
}

/// <summary>y = a - b.</summary>
internal readonly struct SubOperator<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T a, T b) => a - b;

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => a - b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => a - b;
}

/// <summary>y = a · b.</summary>
internal readonly struct MulOperator<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T a, T b) => a * b;

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => a * b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => a * b;
}

/// <summary>y = a / b (IEEE division, correctly rounded in both bodies).</summary>
internal readonly struct DivOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T a, T b) => a / b;

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => a / b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => a / b;
}

/// <summary>y = pow(a, b) of the C library.</summary>
internal readonly struct PowOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T a, T b) => T.Pow(a, b);

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => throw new UnreachableException();

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => throw new UnreachableException();
}

/// <summary>y = max(a, b), IEEE 754-2019 maximum: NaN if either is NaN, +0 over -0 (T.Max and Vector.Max agree).</summary>
internal readonly struct MaximumOperator<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T a, T b) => T.Max(a, b);

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => Vector256.Max(a, b);

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => Vector512.Max(a, b);
}

/// <summary>y = min(a, b), IEEE 754-2019 minimum: NaN if either is NaN, -0 under +0.</summary>
internal readonly struct MinimumOperator<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T a, T b) => T.Min(a, b);

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => Vector256.Min(a, b);

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => Vector512.Min(a, b);
}

/// <summary>y = a where b &gt; 0, else 0 (NaN in b compares false): a ReLU's gradient.</summary>
internal readonly struct ReluGradOperator<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T a, T b) => b > T.Zero ? a : T.Zero;

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => Vector256.ConditionalSelect(Vector256.GreaterThan(b, Vector256<T>.Zero), a, Vector256<T>.Zero);

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => Vector512.ConditionalSelect(Vector512.GreaterThan(b, Vector512<T>.Zero), a, Vector512<T>.Zero);
}

/// <summary>
/// y = a + alpha·b with the product rounded first (a multiply then an add, never a fused
/// multiply-add), so the bits are those of Affine(b; alpha, 0) followed by Add.
/// </summary>
internal readonly struct ScaledAddOperator<T>(T alpha) : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T a, T b) => a + alpha * b;

    public Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => a + Vector256.Create(alpha) * b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => a + Vector512.Create(alpha) * b;
}

/// <summary>Inner loop of a broadcast binary op: vector paths for the stride patterns (1,1), (0,1) and (1,0).</summary>
internal readonly struct BinaryKernel<T, TOp>(TOp op) : IInnerKernel2<T, T, T>
    where T : unmanaged
    where TOp : struct, IBinaryOperator<T>
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(ref T a, nint strideA, ref T b, nint strideB, ref T y, int n)
    {
        if (strideA == 1 && strideB == 1)
        {
            BinaryDriver.VectorVector(ref a, ref b, ref y, n, op);
        }
        else if (strideA == 0 && strideB == 1)
        {
            BinaryDriver.ScalarVector(a, ref b, ref y, n, op);
        }
        else if (strideA == 1 && strideB == 0)
        {
            BinaryDriver.VectorScalar(ref a, b, ref y, n, op);
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                Unsafe.Add(ref y, i) = op.Invoke(Unsafe.Add(ref a, i * strideA), Unsafe.Add(ref b, i * strideB));
            }
        }
    }
}

/// <summary>Contiguous drivers of an <see cref="IBinaryOperator{T}"/>.</summary>
internal static class BinaryDriver
{
    public static void Run<T, TOp>(ReadOnlySpan<T> a, Shape aShape, ReadOnlySpan<T> b, Shape bShape, Span<T> y, Shape yShape, TOp op)
        where T : unmanaged
        where TOp : struct, IBinaryOperator<T>
    {
        // Same-shape and scalar operands skip the broadcast plan: they are most calls of an inner loop.
        long n = yShape.Numel;
        if (n > 0 && n <= int.MaxValue && a.Length >= n && b.Length >= n && aShape.Numel == n && bShape.Numel == n)
        {
            VectorVector(ref MemoryMarshal.GetReference(a), ref MemoryMarshal.GetReference(b), ref MemoryMarshal.GetReference(y), (int)n, op);
            return;
        }
        if (n > 0 && n <= int.MaxValue && a.Length >= n && aShape.Numel == n && bShape.Numel == 1)
        {
            VectorScalar(ref MemoryMarshal.GetReference(a), b[0], ref MemoryMarshal.GetReference(y), (int)n, op);
            return;
        }
        BroadcastWalker.Walk2(a, aShape, b, bShape, y, yShape, new BinaryKernel<T, TOp>(op));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void VectorVector<T, TOp>(ref T a, ref T b, ref T y, int n, TOp op)
        where T : unmanaged
        where TOp : struct, IBinaryOperator<T>
    {
        int i = 0;
        if (TOp.Vectorizable)
        {
            if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            {
                for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                {
                    op.Invoke(Vector512.LoadUnsafe(ref a, (nuint)i), Vector512.LoadUnsafe(ref b, (nuint)i)).StoreUnsafe(ref y, (nuint)i);
                }
            }
            else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            {
                for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                {
                    op.Invoke(Vector256.LoadUnsafe(ref a, (nuint)i), Vector256.LoadUnsafe(ref b, (nuint)i)).StoreUnsafe(ref y, (nuint)i);
                }
            }
        }
        for (; i < n; i++)
        {
            Unsafe.Add(ref y, i) = op.Invoke(Unsafe.Add(ref a, i), Unsafe.Add(ref b, i));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScalarVector<T, TOp>(T a, ref T b, ref T y, int n, TOp op)
        where T : unmanaged
        where TOp : struct, IBinaryOperator<T>
    {
        int i = 0;
        if (TOp.Vectorizable)
        {
            if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            {
                var va = Vector512.Create(a);
                for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                {
                    op.Invoke(va, Vector512.LoadUnsafe(ref b, (nuint)i)).StoreUnsafe(ref y, (nuint)i);
                }
            }
            else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            {
                var va = Vector256.Create(a);
                for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                {
                    op.Invoke(va, Vector256.LoadUnsafe(ref b, (nuint)i)).StoreUnsafe(ref y, (nuint)i);
                }
            }
        }
        for (; i < n; i++)
        {
            Unsafe.Add(ref y, i) = op.Invoke(a, Unsafe.Add(ref b, i));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void VectorScalar<T, TOp>(ref T a, T b, ref T y, int n, TOp op)
        where T : unmanaged
        where TOp : struct, IBinaryOperator<T>
    {
        int i = 0;
        if (TOp.Vectorizable)
        {
            if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            {
                var vb = Vector512.Create(b);
                for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                {
                    op.Invoke(Vector512.LoadUnsafe(ref a, (nuint)i), vb).StoreUnsafe(ref y, (nuint)i);
                }
            }
            else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            {
                var vb = Vector256.Create(b);
                for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                {
                    op.Invoke(Vector256.LoadUnsafe(ref a, (nuint)i), vb).StoreUnsafe(ref y, (nuint)i);
                }
            }
        }
        for (; i < n; i++)
        {
            Unsafe.Add(ref y, i) = op.Invoke(Unsafe.Add(ref a, i), b);
        }
    }
}

/// <summary>One comparison a op b, with a vector body returning an all-ones/all-zeros lane mask.</summary>
internal interface ICompareOperator<T>
{
    bool Invoke(T a, T b);

    Vector512<T> Invoke(Vector512<T> a, Vector512<T> b);
}

/// <summary>a == b (false when either is NaN).</summary>
internal readonly struct EqOperator<T> : ICompareOperator<T> where T : INumber<T>
{
    public bool Invoke(T a, T b) => a == b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => Vector512.Equals(a, b);
}

/// <summary>a != b (true when either is NaN).</summary>
internal readonly struct NeOperator<T> : ICompareOperator<T> where T : INumber<T>
{
    public bool Invoke(T a, T b) => a != b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => ~Vector512.Equals(a, b);
}

/// <summary>a &lt; b.</summary>
internal readonly struct LtOperator<T> : ICompareOperator<T> where T : INumber<T>
{
    public bool Invoke(T a, T b) => a < b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => Vector512.LessThan(a, b);
}

/// <summary>a &lt;= b.</summary>
internal readonly struct LeOperator<T> : ICompareOperator<T> where T : INumber<T>
{
    public bool Invoke(T a, T b) => a <= b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => Vector512.LessThanOrEqual(a, b);
}

/// <summary>a &gt; b.</summary>
internal readonly struct GtOperator<T> : ICompareOperator<T> where T : INumber<T>
{
    public bool Invoke(T a, T b) => a > b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => Vector512.GreaterThan(a, b);
}

/// <summary>a &gt;= b.</summary>
internal readonly struct GeOperator<T> : ICompareOperator<T> where T : INumber<T>
{
    public bool Invoke(T a, T b) => a >= b;

    public Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => Vector512.GreaterThanOrEqual(a, b);
}

/// <summary>
/// Inner loop of a broadcast comparison. Contiguous float rows run 64 lanes at a time: the lane
/// masks are narrowed to bytes (-1 or 0) and masked to 1/0, which is exactly a bool's layout.
/// </summary>
internal readonly struct CompareKernel<T, TOp>(TOp op) : IInnerKernel2<T, T, bool>
    where T : unmanaged
    where TOp : struct, ICompareOperator<T>
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(ref T a, nint strideA, ref T b, nint strideB, ref bool y, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && (typeof(T) == typeof(float) || typeof(T) == typeof(double)) && strideA == 1 && (strideB == 1 || strideB == 0))
        {
            i = RunVector(ref a, ref b, strideB, ref Unsafe.As<bool, byte>(ref y), n);
        }
        for (; i < n; i++)
        {
            Unsafe.Add(ref y, i) = op.Invoke(Unsafe.Add(ref a, i * strideA), Unsafe.Add(ref b, i * strideB));
        }
    }

    private int RunVector(ref T a, ref T b, nint strideB, ref byte y, int n)
    {
        const int Block = 64;
        int w = Vector512<T>.Count;
        var one = Vector512.Create((byte)1);
        var bScalar = Vector512.Create(b);
        int i = 0;
        for (; i <= n - Block; i += Block)
        {
            Vector512<byte> bytes;
            if (typeof(T) == typeof(float))
            {
                var m0 = Mask(ref a, ref b, strideB, bScalar, i).AsInt32();
                var m1 = Mask(ref a, ref b, strideB, bScalar, i + w).AsInt32();
                var m2 = Mask(ref a, ref b, strideB, bScalar, i + 2 * w).AsInt32();
                var m3 = Mask(ref a, ref b, strideB, bScalar, i + 3 * w).AsInt32();
                bytes = Vector512.Narrow(Vector512.Narrow(m0, m1), Vector512.Narrow(m2, m3)).AsByte();
            }
            else
            {
                var s0 = Vector512.Narrow(Mask(ref a, ref b, strideB, bScalar, i).AsInt64(), Mask(ref a, ref b, strideB, bScalar, i + w).AsInt64());
                var s1 = Vector512.Narrow(Mask(ref a, ref b, strideB, bScalar, i + 2 * w).AsInt64(), Mask(ref a, ref b, strideB, bScalar, i + 3 * w).AsInt64());
                var s2 = Vector512.Narrow(Mask(ref a, ref b, strideB, bScalar, i + 4 * w).AsInt64(), Mask(ref a, ref b, strideB, bScalar, i + 5 * w).AsInt64());
                var s3 = Vector512.Narrow(Mask(ref a, ref b, strideB, bScalar, i + 6 * w).AsInt64(), Mask(ref a, ref b, strideB, bScalar, i + 7 * w).AsInt64());
                bytes = Vector512.Narrow(Vector512.Narrow(s0, s1), Vector512.Narrow(s2, s3)).AsByte();
            }
            (bytes & one).StoreUnsafe(ref y, (nuint)i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector512<T> Mask(ref T a, ref T b, nint strideB, Vector512<T> bScalar, int i) =>
        op.Invoke(Vector512.LoadUnsafe(ref a, (nuint)i), strideB == 0 ? bScalar : Vector512.LoadUnsafe(ref b, (nuint)i));
}

/// <summary>Inner loop of a broadcast where(condition, a, b).</summary>
internal readonly struct WhereKernel<T> : IInnerKernel3<bool, T, T, T>
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(ref bool c, nint strideC, ref T a, nint strideA, ref T b, nint strideB, ref T y, int n)
    {
        int start = 0;
        if (strideC == 1 && (strideA | strideB) is 0 or 1 && Avx512F.IsSupported && (typeof(T) == typeof(float) || typeof(T) == typeof(double)))
        {
            start = RunVector(ref Unsafe.As<bool, byte>(ref c), ref a, strideA, ref b, strideB, ref y, n);
            if (start == n)
            {
                return;
            }
            c = ref Unsafe.Add(ref c, start);
            a = ref Unsafe.Add(ref a, start * strideA);
            b = ref Unsafe.Add(ref b, start * strideB);
            y = ref Unsafe.Add(ref y, start);
            n -= start;
        }
        if (strideC == 1 && strideA == 1 && strideB == 1)
        {
            for (int i = 0; i < n; i++)
            {
                Unsafe.Add(ref y, i) = Unsafe.Add(ref c, i) ? Unsafe.Add(ref a, i) : Unsafe.Add(ref b, i);
            }
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                Unsafe.Add(ref y, i) = Unsafe.Add(ref c, i * strideC) ? Unsafe.Add(ref a, i * strideA) : Unsafe.Add(ref b, i * strideB);
            }
        }
    }

    /// <summary>
    /// Float and double lanes under a byte mask (a bool is one byte, 0 or 1), for a contiguous
    /// condition and operands that are contiguous or broadcast scalars; returns how many elements it did.
    /// A select copies one operand's bits, so the lanes equal the scalar loop's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int RunVector(ref byte c, ref T a, nint strideA, ref T b, nint strideB, ref T y, int n)
    {
        int i = 0;
        if (typeof(T) == typeof(float))
        {
            ref float af = ref Unsafe.As<T, float>(ref a), bf = ref Unsafe.As<T, float>(ref b), yf = ref Unsafe.As<T, float>(ref y);
            var aScalar = Vector512.Create(af);
            var bScalar = Vector512.Create(bf);
            for (; i <= n - 16; i += 16)
            {
                var mask = ~Vector512.Equals(Avx512F.ConvertToVector512Int32(Vector128.LoadUnsafe(ref c, (nuint)i)), Vector512<int>.Zero);
                var va = strideA == 0 ? aScalar : Vector512.LoadUnsafe(ref af, (nuint)i);
                var vb = strideB == 0 ? bScalar : Vector512.LoadUnsafe(ref bf, (nuint)i);
                Vector512.ConditionalSelect(mask.AsSingle(), va, vb).StoreUnsafe(ref yf, (nuint)i);
            }
        }
        else
        {
            ref double ad = ref Unsafe.As<T, double>(ref a), bd = ref Unsafe.As<T, double>(ref b), yd = ref Unsafe.As<T, double>(ref y);
            var aScalar = Vector512.Create(ad);
            var bScalar = Vector512.Create(bd);
            for (; i <= n - 8; i += 8)
            {
                var bytes = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref c, i))).AsByte();
                var mask = ~Vector512.Equals(Avx512F.ConvertToVector512Int64(bytes), Vector512<long>.Zero);
                var va = strideA == 0 ? aScalar : Vector512.LoadUnsafe(ref ad, (nuint)i);
                var vb = strideB == 0 ? bScalar : Vector512.LoadUnsafe(ref bd, (nuint)i);
                Vector512.ConditionalSelect(mask.AsDouble(), va, vb).StoreUnsafe(ref yd, (nuint)i);
            }
        }
        return i;
    }
}
