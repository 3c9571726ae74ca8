using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Higher.Reference.Elementwise;

/// <summary>
/// One elementwise function y = f(x) with a scalar body and, when <see cref="Vectorizable"/>, vector
/// bodies that give bitwise the same result per lane (so the scalar tail of a vector loop agrees
/// with the body, and an element's value never depends on its position).
/// </summary>
internal interface IUnaryOperator<T> where T : unmanaged
{
    /// <summary>True when the vector bodies are implemented and bitwise equal to the scalar body.</summary>
    static abstract bool Vectorizable { get; }

    T Invoke(T x);

    Vector256<T> Invoke(Vector256<T> x);

    Vector512<T> Invoke(Vector512<T> x);
}

/// <summary>The dispatch from <see cref="UnaryOp"/> to its operator: one line per op, beside the operators.</summary>
internal static class UnaryKernels
{
    /// <summary>y = op(x; alpha, beta) over float32 or float64; false when the op has no floating-point operator here.</summary>
    public static bool Map<T>(Parallelism threads, UnaryOp op, ReadOnlySpan<T> x, Span<T> y, double alpha, double beta)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T a = T.CreateTruncating(alpha), b = T.CreateTruncating(beta);
        switch (op)
        {
            case UnaryOp.Affine: UnaryDriver.Map(threads, x, y, new AffineOperator<T>(a, b)); break;
            case UnaryOp.Exp: UnaryDriver.Map(threads, x, y, new ExpOperator<T>()); break;
            case UnaryOp.Log: UnaryDriver.Map(threads, x, y, new LogOperator<T>()); break;
            case UnaryOp.Log1p: UnaryDriver.Map(threads, x, y, new Log1pOperator<T>()); break;
            case UnaryOp.Sqrt: UnaryDriver.Map(threads, x, y, new SqrtOperator<T>()); break;
            case UnaryOp.Abs: UnaryDriver.Map(threads, x, y, new AbsOperator<T>()); break;
            case UnaryOp.Sign: UnaryDriver.Map(threads, x, y, new SignOperator<T>()); break;
            case UnaryOp.Relu: UnaryDriver.Map(threads, x, y, new ReluOperator<T>()); break;
            case UnaryOp.LeakyRelu: UnaryDriver.Map(threads, x, y, new LeakyReluOperator<T>(a)); break;
            case UnaryOp.Tanh: UnaryDriver.Map(threads, x, y, new TanhOperator<T>()); break;
            case UnaryOp.Sigmoid: UnaryDriver.Map(threads, x, y, new SigmoidOperator<T>()); break;
            case UnaryOp.Softplus: UnaryDriver.Map(threads, x, y, new SoftplusOperator<T>()); break;
            case UnaryOp.Erf: UnaryDriver.Map(threads, x, y, new ErfOperator<T>()); break;
            case UnaryOp.Reciprocal: UnaryDriver.Map(threads, x, y, new ReciprocalOperator<T>()); break;
            case UnaryOp.PowScalar: UnaryDriver.Map(threads, x, y, new PowScalarOperator<T>(a)); break;
            case UnaryOp.Clamp: UnaryDriver.Map(threads, x, y, new ClampOperator<T>(a, b)); break;
            case UnaryOp.Sin: UnaryDriver.Map(threads, x, y, new SinOperator<T>()); break;
            case UnaryOp.Cos: UnaryDriver.Map(threads, x, y, new CosOperator<T>()); break;
            case UnaryOp.Expm1: UnaryDriver.Map(threads, x, y, new Expm1Operator<T>()); break;
            default: return false;
        }
        return true;
    }
}

// Transcendentals (exp, log, sin, cos, tanh, pow) deliberately run the scalar Math/MathF path: the
// .NET 10 Vector512.Exp/Log/Sin/Cos differ from the C library by up to 3 ulp and Vector512.Exp(0f)
// returns 1.0000001f, which an oracle cannot afford. Their vector bodies are never called.

/// <summary>Base of the operators that have only a scalar body.</summary>
internal static class ScalarOnly
{
    public static Vector256<T> Unreachable256<T>() => throw new UnreachableException();

    public static Vector512<T> Unreachable512<T>() => throw new UnreachableException();
}

/// <summary>y = alpha·x + beta (no fused multiply-add, so vector and scalar bodies agree).</summary>
internal readonly struct AffineOperator<T>(T alpha, T beta) : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T x) => alpha * x + beta;

    public Vector256<T> Invoke(Vector256<T> x) => x * Vector256.Create(alpha) + Vector256.Create(beta);

    public Vector512<T> Invoke(Vector512<T> x) => x * Vector512.Create(alpha) + Vector512.Create(beta);
}

/// <summary>y = (long)(alpha·x + beta) evaluated in double, for Int64 with non-integral coefficients.</summary>
internal readonly struct AffineTruncatingOperator(double alpha, double beta) : IUnaryOperator<long>
{
    public static bool Vectorizable => false;

    public long Invoke(long x) => (long)(alpha * x + beta);

    public Vector256<long> Invoke(Vector256<long> x) => ScalarOnly.Unreachable256<long>();

    public Vector512<long> Invoke(Vector512<long> x) => ScalarOnly.Unreachable512<long>();
}

/// <summary>y = exp(x).</summary>
internal readonly struct ExpOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.Exp(x);

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = ln(x).</summary>
internal readonly struct LogOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.Log(x);

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = ln(1 + x), accurate near 0 (see <see cref="SpecialFunctions.Log1p"/>).</summary>
internal readonly struct Log1pOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.CreateTruncating(SpecialFunctions.Log1p(double.CreateTruncating(x)));

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>
/// y = exp(x) - 1 by Kahan's identity (u - 1)·x / ln u with u = eˣ, which cancels the rounding of u
/// (a few ulps; exp(x) - 1 loses every digit near 0); evaluated in double, rounded once.
/// </summary>
internal readonly struct Expm1Operator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.CreateTruncating(Expm1(double.CreateTruncating(x)));

    private static double Expm1(double x)
    {
        double u = Math.Exp(x);
        if (u == 1.0)
        {
            return x;
        }
        double um1 = u - 1.0;
        return um1 == -1.0 || double.IsPositiveInfinity(u) ? um1 : um1 * x / Math.Log(u);
    }

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = sqrt(x); IEEE square root is correctly rounded, so the vector body is exact too.</summary>
internal readonly struct SqrtOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T x) => T.Sqrt(x);

    public Vector256<T> Invoke(Vector256<T> x) => Vector256.Sqrt(x);

    public Vector512<T> Invoke(Vector512<T> x) => Vector512.Sqrt(x);
}

/// <summary>y = |x|.</summary>
internal readonly struct AbsOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T x) => T.Abs(x);

    public Vector256<T> Invoke(Vector256<T> x) => Vector256.Abs(x);

    public Vector512<T> Invoke(Vector512<T> x) => Vector512.Abs(x);
}

/// <summary>y = 1 if x &gt; 0, -1 if x &lt; 0, else x (so ±0 and NaN pass through).</summary>
internal readonly struct SignOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T x) => x > T.Zero ? T.One : x < T.Zero ? T.NegativeOne : x;

    public Vector256<T> Invoke(Vector256<T> x) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<T>.Zero), Vector256<T>.One,
            Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256<T>.Zero), -Vector256<T>.One, x));

    public Vector512<T> Invoke(Vector512<T> x) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<T>.Zero), Vector512<T>.One,
            Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<T>.Zero), -Vector512<T>.One, x));
}

/// <summary>y = max(x, 0) with IEEE 754-2019 maximum semantics (NaN propagates); Math.Max and Vector.Max agree.</summary>
internal readonly struct ReluOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T x) => T.Max(x, T.Zero);

    public Vector256<T> Invoke(Vector256<T> x) => Vector256.Max(x, Vector256<T>.Zero);

    public Vector512<T> Invoke(Vector512<T> x) => Vector512.Max(x, Vector512<T>.Zero);
}

/// <summary>y = x if x &gt; 0 else alpha·x.</summary>
internal readonly struct LeakyReluOperator<T>(T alpha) : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T x) => x > T.Zero ? x : alpha * x;

    public Vector256<T> Invoke(Vector256<T> x) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<T>.Zero), x, x * Vector256.Create(alpha));

    public Vector512<T> Invoke(Vector512<T> x) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<T>.Zero), x, x * Vector512.Create(alpha));
}

/// <summary>y = tanh(x).</summary>
internal readonly struct TanhOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.Tanh(x);

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = 1 / (1 + exp(-x)); for x &lt; 0 as e / (1 + e) with e = exp(x), so exp never overflows.</summary>
internal readonly struct SigmoidOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x)
    {
        // One exp of -|x| serves both signs, and the sign only picks the numerator: a select, not a
        // branch that mispredicts on every other element of mixed-sign data.
        T e = T.Exp(-T.Abs(x));
        T numerator = x >= T.Zero ? T.One : e;
        return numerator / (T.One + e);
    }

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = max(x, 0) + log1p(exp(-|x|)).</summary>
internal readonly struct SoftplusOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x)
    {
        if (T.IsNaN(x))
        {
            return x;
        }
        double xd = double.CreateTruncating(x);
        return T.CreateTruncating(Math.Max(xd, 0.0) + SpecialFunctions.Log1p(Math.Exp(-Math.Abs(xd))));
    }

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = erf(x) (see <see cref="SpecialFunctions.Erf"/>; float32 rounds the double result).</summary>
internal readonly struct ErfOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.CreateTruncating(SpecialFunctions.Erf(double.CreateTruncating(x)));

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = 1 / x (IEEE division, correctly rounded in both bodies).</summary>
internal readonly struct ReciprocalOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T x) => T.One / x;

    public Vector256<T> Invoke(Vector256<T> x) => Vector256<T>.One / x;

    public Vector512<T> Invoke(Vector512<T> x) => Vector512<T>.One / x;
}

/// <summary>y = pow(x, alpha) of the C library.</summary>
internal readonly struct PowScalarOperator<T>(T alpha) : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.Pow(x, alpha);

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = min(max(x, low), high); NaN propagates.</summary>
internal readonly struct ClampOperator<T>(T low, T high) : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => true;

    public T Invoke(T x) => T.Min(T.Max(x, low), high);

    public Vector256<T> Invoke(Vector256<T> x) => Vector256.Min(Vector256.Max(x, Vector256.Create(low)), Vector256.Create(high));

    public Vector512<T> Invoke(Vector512<T> x) => Vector512.Min(Vector512.Max(x, Vector512.Create(low)), Vector512.Create(high));
}

/// <summary>y = sin(x).</summary>
internal readonly struct SinOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.Sin(x);

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>y = cos(x).</summary>
internal readonly struct CosOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool Vectorizable => false;

    public T Invoke(T x) => T.Cos(x);

    public Vector256<T> Invoke(Vector256<T> x) => ScalarOnly.Unreachable256<T>();

    public Vector512<T> Invoke(Vector512<T> x) => ScalarOnly.Unreachable512<T>();
}

/// <summary>Drives an <see cref="IUnaryOperator{T}"/> over contiguous spans.</summary>
internal static class UnaryDriver
{
    // Scalar transcendentals cost ~10-50 ns each: above this many elements both cores pay off.
    // Each element is computed independently, so splitting cannot change any result.
    private const int ParallelThreshold = 1 << 15;

    // Vectorized operators are bound by memory; from 1 MiB of float two threads still wrote a 4.3 MB ReLU output in
    // 0.24 ms against 0.47 on one (2026-12-02, this 2-core machine).
    private const int VectorizedParallelThreshold = 1 << 18;

    public static void Map<T, TOp>(Parallelism threads, ReadOnlySpan<T> x, Span<T> y, TOp op)
        where T : unmanaged
        where TOp : struct, IUnaryOperator<T>
    {
        if (x.Length >= (TOp.Vectorizable ? VectorizedParallelThreshold : ParallelThreshold) && threads.Enabled)
        {
            MapParallel(threads, x, y, op);
            return;
        }
        MapRange(ref MemoryMarshal.GetReference(x), ref MemoryMarshal.GetReference(y), x.Length, op);
    }

    private static unsafe void MapParallel<T, TOp>(Parallelism threads, ReadOnlySpan<T> x, Span<T> y, TOp op)
        where T : unmanaged
        where TOp : struct, IUnaryOperator<T>
    {
        int n = x.Length;
        int chunks = Math.Min(threads.MaxDegree * 4, (n + ParallelThreshold / 4 - 1) / (ParallelThreshold / 4));
        fixed (T* px = x)
        fixed (T* py = y)
        {
            nint xp = (nint)px, yp = (nint)py;
            threads.For(0, chunks, c =>
            {
                int start = (int)((long)n * c / chunks);
                int end = (int)((long)n * (c + 1) / chunks);
                MapRange(ref Unsafe.AsRef<T>((T*)xp + start), ref Unsafe.AsRef<T>((T*)yp + start), end - start, op);
            });
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static void MapRange<T, TOp>(ref T x, ref T y, int n, TOp op)
        where T : unmanaged
        where TOp : struct, IUnaryOperator<T>
    {
        int i = 0;
        if (TOp.Vectorizable)
        {
            if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            {
                for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                {
                    op.Invoke(Vector512.LoadUnsafe(ref x, (nuint)i)).StoreUnsafe(ref y, (nuint)i);
                }
            }
            else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            {
                for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                {
                    op.Invoke(Vector256.LoadUnsafe(ref x, (nuint)i)).StoreUnsafe(ref y, (nuint)i);
                }
            }
        }
        for (; i < n; i++)
        {
            Unsafe.Add(ref y, i) = op.Invoke(Unsafe.Add(ref x, i));
        }
    }
}
