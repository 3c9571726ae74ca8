using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference;

/// <summary>Counter-based draws: element i depends only on (seed, offset + i), so any split of the range gives the same numbers.</summary>
internal static class RandomFill
{
    private const int ParallelThreshold = 1 << 16;
    private const int Chunk = 1 << 14;

    // Philox4x32-10's multipliers and Weyl key increments: the specification's (Higher.Philox).
    private const uint M0 = Philox.M0, M1 = Philox.M1, W0 = Philox.W0, W1 = Philox.W1;
    private const double TwoPow53Inv = Philox.TwoPow53Inv;

    /// <summary>Elements per step of the AVX-512 path: one Philox block per 64-bit lane.</summary>
    internal const int VectorWidth = 8;

    /// <summary>True when <see cref="FillRange{T}"/> draws whole groups of <see cref="VectorWidth"/> elements with AVX-512.</summary>
    internal static bool VectorPathSupported => Avx512F.IsSupported && Avx512DQ.IsSupported;

    public static void Fill<T>(Parallelism threads, Span<T> destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b)
        where T : unmanaged
    {
        int n = destination.Length;
        if (n >= ParallelThreshold && threads.Enabled)
        {
            unsafe
            {
                fixed (T* p = destination)
                {
                    nint address = (nint)p;
                    threads.For(0, (n + Chunk - 1) / Chunk, c =>
                    {
                        int start = c * Chunk;
                        int length = Math.Min(Chunk, n - start);
                        FillRange(new Span<T>((T*)address + start, length), distribution, seed, offset + (ulong)start, a, b);
                    });
                }
            }
            return;
        }
        FillRange(destination, distribution, seed, offset, a, b);
    }

    /// <summary>
    /// Draws elements (seed, offset + i) into <paramref name="destination"/>: groups of eight with AVX-512 where the
    /// machine has it and <paramref name="vector"/> is set, the rest (and everything otherwise) one element at a
    /// time. Both give the same bits: the vector path performs the scalar path's operations, in its order, per lane.
    /// </summary>
    internal static unsafe void FillRange<T>(Span<T> destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b, bool vector = true)
        where T : unmanaged
    {
        int done = 0;
        if (vector && VectorPathSupported && destination.Length >= VectorWidth)
        {
            fixed (T* p = destination)
            {
                done = destination.Length & ~(VectorWidth - 1);
                if (distribution == RandomDistribution.Uniform)
                {
                    Uniform512(p, done, seed, offset, a, b);
                }
                else
                {
                    Normal512(p, done, seed, offset, a, b);
                }
            }
        }
        FillScalar(destination[done..], distribution, seed, offset + (ulong)done, a, b);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FillScalar<T>(Span<T> destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b)
        where T : unmanaged
    {
        // Every draw is computed in double and rounded once to the storage type; a uniform draw that
        // rounding carried up to `high` becomes the largest value below it, so draws stay in [low, high).
        bool uniform = distribution == RandomDistribution.Uniform;
        bool clampHigh = uniform && b > a;
        for (int i = 0; i < destination.Length; i++)
        {
            ulong counter = offset + (ulong)i;
            double v = uniform
                ? a + (b - a) * Philox.Uniform(seed, counter)
                : a + b * Philox.Normal(seed, counter);
            if (typeof(T) == typeof(float))
            {
                float f = (float)v;
                if (clampHigh && f >= (float)b)
                {
                    f = MathF.BitDecrement((float)b);
                }
                destination[i] = (T)(object)f;
            }
            else
            {
                if (clampHigh && v >= b)
                {
                    v = Math.BitDecrement(b);
                }
                destination[i] = (T)(object)v;
            }
        }
    }

    /// <summary>
    /// Uniform draws for <paramref name="n"/> (a multiple of 8) elements: the scalar path's a + (b - a)·u
    /// (a multiply, then an add: never fused), rounded once to T and clamped below b, sixteen elements at a
    /// time (two blocks of eight lanes) and a last eight alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Uniform512<T>(T* destination, int n, ulong seed, ulong offset, double a, double b)
        where T : unmanaged
    {
        bool clampHigh = b > a;
        var low = Vector512.Create(a);
        var width = Vector512.Create(b - a);
        var counter = Vector512.Create(offset) + Vector512<ulong>.Indices;
        var step = Vector512.Create((ulong)VectorWidth);
        var keys = stackalloc Vector512<ulong>[20];
        KeySchedule(seed, keys);
        var highF = Vector256.Create((float)b);
        var belowF = Vector256.Create(MathF.BitDecrement((float)b));
        var highD = Vector512.Create(b);
        var belowD = Vector512.Create(Math.BitDecrement(b));
        var twoSteps = Vector512.Create(2UL * VectorWidth);
        int i = 0;
        // Two blocks of eight interleaved: one block's rounds form a chain of dependent multiplies, so a second,
        // independent chain fills the multiplier while the first waits.
        for (; i + 2 * VectorWidth <= n; i += 2 * VectorWidth)
        {
            Block2(counter, counter + step, keys, out var x0, out var x1, out var y0, out var y1);
            counter += twoSteps;
            StoreUniform(destination + i, ToUnit(x0, x1), low, width, clampHigh, highF, belowF, highD, belowD);
            StoreUniform(destination + i + VectorWidth, ToUnit(y0, y1), low, width, clampHigh, highF, belowF, highD, belowD);
        }
        if (i < n)
        {
            Block(counter, keys, out var x0, out var x1, out _, out _);
            StoreUniform(destination + i, ToUnit(x0, x1), low, width, clampHigh, highF, belowF, highD, belowD);
        }
    }

    /// <summary>Eight uniform draws from their units <paramref name="u"/>: low + width·u, rounded to T, clamped below high when <paramref name="clampHigh"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreUniform<T>(T* destination, Vector512<double> u, Vector512<double> low, Vector512<double> width, bool clampHigh,
        Vector256<float> highF, Vector256<float> belowF, Vector512<double> highD, Vector512<double> belowD)
        where T : unmanaged
    {
        var v = Avx512F.Add(low, Avx512F.Multiply(width, u));
        if (typeof(T) == typeof(float))
        {
            var f = Avx512F.ConvertToVector256Single(v);
            if (clampHigh)
            {
                f = Avx.BlendVariable(f, belowF, Avx.CompareGreaterThanOrEqual(f, highF));
            }
            f.Store((float*)destination);
        }
        else
        {
            if (clampHigh)
            {
                v = Vector512.ConditionalSelect(Avx512F.CompareGreaterThanOrEqual(v, highD), belowD, v);
            }
            v.Store((double*)destination);
        }
    }

    /// <summary>
    /// Normal draws for <paramref name="n"/> (a multiple of 8) elements: Philox and Box-Muller's arithmetic eight
    /// lanes at a time, Math.Log and Math.Cos per lane (vector approximations would change the bits).
    /// sqrt, the products and the differences are correctly rounded in both forms.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Normal512<T>(T* destination, int n, ulong seed, ulong offset, double a, double b)
        where T : unmanaged
    {
        var mean = Vector512.Create(a);
        var std = Vector512.Create(b);
        var one = Vector512.Create(1.0);
        var minusTwo = Vector512.Create(-2.0);
        var twoPi = Vector512.Create(2.0 * Math.PI);
        var counter = Vector512.Create(offset) + Vector512<ulong>.Indices;
        var step = Vector512.Create((ulong)VectorWidth);
        var keys = stackalloc Vector512<ulong>[20];
        KeySchedule(seed, keys);
        double* logs = stackalloc double[VectorWidth];
        double* cosines = stackalloc double[VectorWidth];
        for (int i = 0; i < n; i += VectorWidth)
        {
            Block(counter, keys, out var x0, out var x1, out var x2, out var x3);
            counter += step;
            Avx512F.Subtract(one, ToUnit(x0, x1)).Store(logs);
            Avx512F.Multiply(twoPi, ToUnit(x2, x3)).Store(cosines);
            for (int j = 0; j < VectorWidth; j++)
            {
                logs[j] = Math.Log(logs[j]);
                cosines[j] = Math.Cos(cosines[j]);
            }
            var radius = Avx512F.Sqrt(Avx512F.Multiply(minusTwo, Vector512.Load(logs)));
            var normal = Avx512F.Multiply(radius, Vector512.Load(cosines));
            var v = Avx512F.Add(mean, Avx512F.Multiply(std, normal));
            if (typeof(T) == typeof(float))
            {
                Avx512F.ConvertToVector256Single(v).Store((float*)destination + i);
            }
            else
            {
                v.Store((double*)destination + i);
            }
        }
    }

    /// <summary>
    /// The key schedule of <paramref name="seed"/> for <see cref="Block"/>: round r's (k0, k1) broadcast to
    /// <c>keys[2r]</c> and <c>keys[2r + 1]</c>, the 32-bit words in the low halves of the lanes.
    /// </summary>
    private static unsafe void KeySchedule(ulong seed, Vector512<ulong>* keys)
    {
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int round = 0; round < 10; round++)
        {
            keys[2 * round] = Vector512.Create((ulong)k0);
            keys[2 * round + 1] = Vector512.Create((ulong)k1);
            k0 += W0;
            k1 += W1;
        }
    }

    /// <summary>
    /// Philox4x32-10 for the eight counters in <paramref name="counter"/>'s lanes, with the key schedule from
    /// <see cref="KeySchedule"/>. Each 32-bit word sits in the low half of a 64-bit lane, so vpmuludq gives the
    /// full 32×32 → 64-bit products, and vpshufd moves a product's high word down (on another port than the
    /// multiplies, where a shift would compete with them). The high halves of the words carry garbage that
    /// neither the multiplies (which read the low halves) nor the low halves of the xors see.
    /// Outputs: the words in the low halves; the high halves are not cleared.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Block(Vector512<ulong> counter, Vector512<ulong>* keys, out Vector512<ulong> x0, out Vector512<ulong> x1, out Vector512<ulong> x2, out Vector512<ulong> x3)
    {
        var m0 = Vector512.Create((ulong)M0).AsUInt32();
        var m1 = Vector512.Create((ulong)M1).AsUInt32();
        // Round 1 with c2 = c3 = 0: the second product is 0.
        var p0 = Avx512F.Multiply(counter.AsUInt32(), m0);
        var c0 = Avx512F.Xor(Avx512F.ShiftRightLogical(counter, 32), keys[0]);
        var c1 = Vector512<ulong>.Zero;
        var c2 = Avx512F.Xor(HighWord(p0), keys[1]);
        var c3 = p0;
        for (int round = 1; round < 10; round++)
        {
            p0 = Avx512F.Multiply(c0.AsUInt32(), m0);
            var p1 = Avx512F.Multiply(c2.AsUInt32(), m1);
            c0 = Avx512F.TernaryLogic(HighWord(p1), c1, keys[2 * round], 0x96); // hi1 ^ c1 ^ k0
            c1 = p1;
            c2 = Avx512F.TernaryLogic(HighWord(p0), c3, keys[2 * round + 1], 0x96); // hi0 ^ c3 ^ k1
            c3 = p0;
        }
        x0 = c0;
        x1 = c1;
        x2 = c2;
        x3 = c3;
    }

    /// <summary>
    /// <see cref="Block"/> for two groups of eight counters, <paramref name="cx"/> and <paramref name="cy"/>, with their
    /// rounds interleaved; only the first two words of each block (what a uniform draw uses).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Block2(Vector512<ulong> cx, Vector512<ulong> cy, Vector512<ulong>* keys,
        out Vector512<ulong> x0, out Vector512<ulong> x1, out Vector512<ulong> y0, out Vector512<ulong> y1)
    {
        var m0 = Vector512.Create((ulong)M0).AsUInt32();
        var m1 = Vector512.Create((ulong)M1).AsUInt32();
        var px0 = Avx512F.Multiply(cx.AsUInt32(), m0);
        var py0 = Avx512F.Multiply(cy.AsUInt32(), m0);
        var x2 = Avx512F.Xor(HighWord(px0), keys[1]);
        var y2 = Avx512F.Xor(HighWord(py0), keys[1]);
        x0 = Avx512F.Xor(Avx512F.ShiftRightLogical(cx, 32), keys[0]);
        y0 = Avx512F.Xor(Avx512F.ShiftRightLogical(cy, 32), keys[0]);
        x1 = Vector512<ulong>.Zero;
        y1 = Vector512<ulong>.Zero;
        var x3 = px0;
        var y3 = py0;
        for (int round = 1; round < 10; round++)
        {
            var k0 = keys[2 * round];
            var k1 = keys[2 * round + 1];
            px0 = Avx512F.Multiply(x0.AsUInt32(), m0);
            py0 = Avx512F.Multiply(y0.AsUInt32(), m0);
            var px1 = Avx512F.Multiply(x2.AsUInt32(), m1);
            var py1 = Avx512F.Multiply(y2.AsUInt32(), m1);
            x0 = Avx512F.TernaryLogic(HighWord(px1), x1, k0, 0x96);
            y0 = Avx512F.TernaryLogic(HighWord(py1), y1, k0, 0x96);
            x1 = px1;
            y1 = py1;
            x2 = Avx512F.TernaryLogic(HighWord(px0), x3, k1, 0x96);
            y2 = Avx512F.TernaryLogic(HighWord(py0), y3, k1, 0x96);
            x3 = px0;
            y3 = py0;
        }
    }

    /// <summary>A 64-bit product's high word in the low half of its lane (and in the high half too).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> HighWord(Vector512<ulong> p) => Avx512F.Shuffle(p.AsUInt32(), 0b11_11_01_01).AsUInt64();

    /// <summary>
    /// unit(hi, lo) = ((hi &lt;&lt; 32 | lo) &gt;&gt; 11) · 2^-53 for words in the low halves of the lanes (high halves
    /// ignored): the 53-bit integer converts to double exactly, and the scaling by a power of two is exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<double> ToUnit(Vector512<ulong> hi, Vector512<ulong> lo)
    {
        var low32 = Vector512.Create(0xFFFF_FFFFUL);
        var bits = Avx512F.TernaryLogic(Avx512F.ShiftLeftLogical(hi, 32), lo, low32, 0xF8); // (hi << 32) | (lo & low32)
        var u = Avx512DQ.ConvertToVector512Double(Avx512F.ShiftRightLogical(bits, 11));
        return Avx512F.Multiply(u, Vector512.Create(TwoPow53Inv));
    }
}
