using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference;

/// <summary>
/// Eight double lanes, whatever the machine's vector width: the accumulators of the loops that sum float or double
/// data in double (<see cref="BatchNormKernels"/>, the block sums of <see cref="Reducers"/>). A loop written once over <c>TL : ILanes8&lt;TL&gt;</c> is
/// specialized by the JIT for <see cref="Lanes512"/> (one Vector512) and <see cref="Lanes256"/> (two Vector256); both
/// add the same elements into the same lane in the same order, and <see cref="Sum"/> adds the eight lanes in one fixed
/// order, so the bits are the same with AVX-512 and with AVX2.
/// </summary>
internal unsafe interface ILanes8<TL>
    where TL : struct, ILanes8<TL>
{
    /// <summary>Whether this machine runs the type's vectors in hardware.</summary>
    static abstract bool Accelerated { get; }

    static abstract TL Create(double value);

    /// <summary>The 16 elements at p, in double: elements 0-7 as lo, 8-15 as hi (float widened exactly).</summary>
    static abstract void Load16<T>(T* p, out TL lo, out TL hi)
        where T : unmanaged;

    /// <summary>
    /// <see cref="Load16{T}(T*, out TL, out TL)"/> of p[0, count) followed by 16 - count copies of <paramref name="pad"/> (0 &lt; count &lt; 16),
    /// with masked loads: nothing at or past p + count is read, so a row's last partial step needs no copy.
    /// </summary>
    static abstract void Load16<T>(T* p, int count, T pad, out TL lo, out TL hi)
        where T : unmanaged;

    static abstract TL operator +(TL a, TL b);

    static abstract TL operator -(TL a, TL b);

    static abstract TL operator *(TL a, TL b);

    /// <summary>((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)).</summary>
    static abstract double Sum(TL v);

    /// <summary>The eight lanes to p[0, 8).</summary>
    static abstract void Store(TL v, double* p);
}

/// <summary>Eight double lanes as one Vector512.</summary>
internal unsafe struct Lanes512 : ILanes8<Lanes512>
{
    private Vector512<double> _v;

    private Lanes512(Vector512<double> v) => _v = v;

    public static bool Accelerated => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 Create(double value) => new(Vector512.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16<T>(T* p, int count, T pad, out Lanes512 lo, out Lanes512 hi)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var keep = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle();
            var (l, h) = Vector512.Widen(Avx512F.MaskLoad((float*)p, keep, Vector512.Create(Unsafe.As<T, float>(ref pad))));
            lo = new(l);
            hi = new(h);
        }
        else
        {
            var merge = Vector512.Create(Unsafe.As<T, double>(ref pad));
            var indices = Vector512<long>.Indices;
            lo = new(Avx512F.MaskLoad((double*)p, Vector512.LessThan(indices, Vector512.Create((long)count)).AsDouble(), merge));
            hi = new(Avx512F.MaskLoad((double*)p + 8, Vector512.LessThan(indices, Vector512.Create((long)count - 8)).AsDouble(), merge));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16<T>(T* p, out Lanes512 lo, out Lanes512 hi)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var (l, h) = Vector512.Widen(Vector512.Load((float*)p));
            lo = new(l);
            hi = new(h);
        }
        else
        {
            lo = new(Vector512.Load((double*)p));
            hi = new(Vector512.Load((double*)p + 8));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 operator +(Lanes512 a, Lanes512 b) => new(a._v + b._v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 operator -(Lanes512 a, Lanes512 b) => new(a._v - b._v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 operator *(Lanes512 a, Lanes512 b) => new(a._v * b._v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Lanes512 v, double* p) => v._v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Sum(Lanes512 v) => Lanes256.Sum(v._v.GetLower(), v._v.GetUpper());
}

/// <summary>Eight double lanes as two Vector256: lanes 0-3 and 4-7.</summary>
internal unsafe struct Lanes256 : ILanes8<Lanes256>
{
    private Vector256<double> _lo, _hi;

    private Lanes256(Vector256<double> lo, Vector256<double> hi)
    {
        _lo = lo;
        _hi = hi;
    }

    public static bool Accelerated => Vector256.IsHardwareAccelerated && Avx2.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 Create(double value) => new(Vector256.Create(value), Vector256.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16<T>(T* p, int count, T pad, out Lanes256 lo, out Lanes256 hi)
        where T : unmanaged
    {
        // vmaskmov reads zeros where the mask is clear; the pad is blended in after.
        if (typeof(T) == typeof(float))
        {
            var indices = Vector256<int>.Indices;
            var keepLo = Vector256.LessThan(indices, Vector256.Create(count)).AsSingle();
            var keepHi = Vector256.LessThan(indices, Vector256.Create(count - 8)).AsSingle();
            var padV = Vector256.Create(Unsafe.As<T, float>(ref pad));
            var (a, b) = Vector256.Widen(Avx.BlendVariable(padV, Avx.MaskLoad((float*)p, keepLo), keepLo));
            var (c, d) = Vector256.Widen(Avx.BlendVariable(padV, Avx.MaskLoad((float*)p + 8, keepHi), keepHi));
            lo = new(a, b);
            hi = new(c, d);
        }
        else
        {
            var indices = Vector256<long>.Indices;
            var padV = Vector256.Create(Unsafe.As<T, double>(ref pad));
            lo = new(Masked((double*)p, count, indices, padV), Masked((double*)p + 4, count - 4, indices, padV));
            hi = new(Masked((double*)p + 8, count - 8, indices, padV), Masked((double*)p + 12, count - 12, indices, padV));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<double> Masked(double* p, int count, Vector256<long> indices, Vector256<double> pad)
    {
        var keep = Vector256.LessThan(indices, Vector256.Create((long)count)).AsDouble();
        return Avx.BlendVariable(pad, Avx.MaskLoad(p, keep), keep);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16<T>(T* p, out Lanes256 lo, out Lanes256 hi)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var (a, b) = Vector256.Widen(Vector256.Load((float*)p));
            var (c, d) = Vector256.Widen(Vector256.Load((float*)p + 8));
            lo = new(a, b);
            hi = new(c, d);
        }
        else
        {
            lo = new(Vector256.Load((double*)p), Vector256.Load((double*)p + 4));
            hi = new(Vector256.Load((double*)p + 8), Vector256.Load((double*)p + 12));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 operator +(Lanes256 a, Lanes256 b) => new(a._lo + b._lo, a._hi + b._hi);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 operator -(Lanes256 a, Lanes256 b) => new(a._lo - b._lo, a._hi - b._hi);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 operator *(Lanes256 a, Lanes256 b) => new(a._lo * b._lo, a._hi * b._hi);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Lanes256 v, double* p)
    {
        v._lo.Store(p);
        v._hi.Store(p + 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Sum(Lanes256 v) => Sum(v._lo, v._hi);

    /// <summary>The fixed order of <see cref="ILanes8{TL}.Sum"/> over lanes lo[0..3], hi[0..3].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static double Sum(Vector256<double> lo, Vector256<double> hi) =>
        ((lo.GetElement(0) + lo.GetElement(1)) + (lo.GetElement(2) + lo.GetElement(3)))
        + ((hi.GetElement(0) + hi.GetElement(1)) + (hi.GetElement(2) + hi.GetElement(3)));
}

/// <summary>
/// A vector of T, whatever the machine's width: the elementwise loops of <see cref="BatchNormKernels"/> written once
/// over <c>TV : IVec&lt;TV, T&gt;</c>, specialized for <see cref="Vec512{T}"/> and <see cref="Vec256{T}"/>. Each lane
/// rounds the same operations, so the width changes no bit.
/// </summary>
internal unsafe interface IVec<TV, T>
    where TV : struct, IVec<TV, T>
    where T : unmanaged
{
    static abstract bool Accelerated { get; }

    static abstract int Count { get; }

    static abstract TV Create(T value);

    static abstract TV Load(T* p);

    static abstract void Store(TV v, T* p);

    /// <summary>p[0, count) with zeros after (0 &lt; count &lt; Count), by a masked load: nothing at or past p + count is read.</summary>
    static abstract TV Load(T* p, int count);

    /// <summary>The first count lanes (0 &lt; count &lt; Count) to p[0, count), by a masked store: nothing past them is written.</summary>
    static abstract void Store(TV v, T* p, int count);

    static abstract TV operator +(TV a, TV b);

    static abstract TV operator -(TV a, TV b);

    static abstract TV operator *(TV a, TV b);
}

internal unsafe struct Vec512<T> : IVec<Vec512<T>, T>
    where T : unmanaged
{
    private Vector512<T> _v;

    private Vec512(Vector512<T> v) => _v = v;

    public static bool Accelerated => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    public static int Count => Vector512<T>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512<T> Create(T value) => new(Vector512.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512<T> Load(T* p) => new(Vector512.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vec512<T> v, T* p) => v._v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512<T> Load(T* p, int count)
    {
        if (typeof(T) == typeof(float))
        {
            var keep = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle();
            return new(Avx512F.MaskLoad((float*)p, keep, Vector512<float>.Zero).As<float, T>());
        }
        var keep64 = Vector512.LessThan(Vector512<long>.Indices, Vector512.Create((long)count)).AsDouble();
        return new(Avx512F.MaskLoad((double*)p, keep64, Vector512<double>.Zero).As<double, T>());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vec512<T> v, T* p, int count)
    {
        if (typeof(T) == typeof(float))
        {
            Avx512F.MaskStore((float*)p, Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle(), v._v.As<T, float>());
        }
        else
        {
            Avx512F.MaskStore((double*)p, Vector512.LessThan(Vector512<long>.Indices, Vector512.Create((long)count)).AsDouble(), v._v.As<T, double>());
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512<T> operator +(Vec512<T> a, Vec512<T> b) => new(a._v + b._v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512<T> operator -(Vec512<T> a, Vec512<T> b) => new(a._v - b._v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512<T> operator *(Vec512<T> a, Vec512<T> b) => new(a._v * b._v);
}

internal unsafe struct Vec256<T> : IVec<Vec256<T>, T>
    where T : unmanaged
{
    private Vector256<T> _v;

    private Vec256(Vector256<T> v) => _v = v;

    public static bool Accelerated => Vector256.IsHardwareAccelerated && Avx.IsSupported;

    public static int Count => Vector256<T>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256<T> Create(T value) => new(Vector256.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256<T> Load(T* p) => new(Vector256.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vec256<T> v, T* p) => v._v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256<T> Load(T* p, int count)
    {
        if (typeof(T) == typeof(float))
        {
            return new(Avx.MaskLoad((float*)p, Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(count)).AsSingle()).As<float, T>());
        }
        return new(Avx.MaskLoad((double*)p, Vector256.LessThan(Vector256<long>.Indices, Vector256.Create((long)count)).AsDouble()).As<double, T>());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vec256<T> v, T* p, int count)
    {
        if (typeof(T) == typeof(float))
        {
            Avx.MaskStore((float*)p, Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(count)).AsSingle(), v._v.As<T, float>());
        }
        else
        {
            Avx.MaskStore((double*)p, Vector256.LessThan(Vector256<long>.Indices, Vector256.Create((long)count)).AsDouble(), v._v.As<T, double>());
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256<T> operator +(Vec256<T> a, Vec256<T> b) => new(a._v + b._v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256<T> operator -(Vec256<T> a, Vec256<T> b) => new(a._v - b._v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256<T> operator *(Vec256<T> a, Vec256<T> b) => new(a._v * b._v);
}
