using System.Numerics;
using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The Reference GEMM's small-product path (operands that fit in L1: tiles of up to 8 rows × 3
/// masked vectors read in place, matrix-vector products run as their transpose, each tile kernel
/// walking a chunk of the batch, batches shared out in ranges per thread) against the packed blocked
/// path, byte for byte (shared stride-0 operands included), and against a float64 triple loop. Every operand sits between NaN guards, so a read past its end would poison C, and
/// C's own guards must come back untouched.
/// </summary>
public sealed class ReferenceGemmPathTests
{
    private const int Guard = 40;

    private static readonly Parallelism Serial = new(1);
    private static readonly Parallelism Two = new(2);
    private static readonly Parallelism Four = new(4);

    /// <summary>The products of a task-batched sinusoid MLP (1-40-40-1, K = 10, 25 tasks) forward and backward, and their neighbours.</summary>
    public static TheoryData<bool, bool, int, int, int, int> InnerLoopShapes => new()
    {
        { false, true, 25, 10, 40, 40 }, { true, false, 25, 40, 40, 10 }, { false, false, 25, 10, 40, 40 },
        { false, true, 25, 10, 1, 40 }, { false, false, 25, 10, 40, 1 }, { true, false, 25, 1, 40, 10 },
        { false, true, 25, 10, 40, 1 }, { true, false, 25, 40, 1, 10 }, { false, false, 25, 10, 1, 40 },
        { true, true, 25, 40, 10, 40 }, { false, false, 7, 11, 47, 13 }, { true, true, 3, 17, 49, 3 },
        { false, true, 100, 10, 40, 40 }, { true, false, 100, 40, 40, 10 }, // enough work to share the matrices out between threads
        { true, true, 25, 10, 40, 1 }, { true, true, 25, 1, 40, 10 }, { true, true, 25, 10, 1, 40 }, // layouts that one-wide dimensions make moot
        { false, true, 97, 13, 40, 40 }, { true, false, 3, 10, 40, 40 }, // chunks of matrices that do not divide the batch
    };

    [Theory]
    [MemberData(nameof(InnerLoopShapes))]
    public void InnerLoopProducts_SmallPathMatchesBlockedBitwise_AtEveryThreadCount(bool ta, bool tb, int batch, int m, int n, int k)
    {
        foreach (double beta in new[] { 0.0, 1.0, 0.5 })
        {
            CheckFloat(new Random(m * 1000 + n * 10 + k), ta, tb, batch, m, n, k, 1.0, beta, false, false);
            CheckDouble(new Random(m * 1000 + n * 10 + k + 1), ta, tb, batch, m, n, k, -0.75, beta, false, false);
        }
    }

    [Fact]
    public void RandomSmallProducts_SmallPathMatchesBlockedBitwise_AndTheOracle()
    {
        var rng = new Random(20261201);
        double[] alphas = [1, -0.75, 2.5];
        double[] betas = [0, 1, 0.5, -2];
        int[] batches = [1, 2, 5, 25];
        for (int i = 0; i < 1500; i++)
        {
            // Sizes 1-80 around the vector widths (8, 16, 32, 48) and the tile heights, mostly within the small path's L1 bound.
            int m = Size(rng), n = Size(rng), k = rng.Next(4) == 0 ? rng.Next(1, 4) : Size(rng);
            bool ta = rng.Next(2) == 0, tb = rng.Next(2) == 0;
            int batch = batches[rng.Next(batches.Length)];
            double alpha = alphas[rng.Next(alphas.Length)], beta = betas[rng.Next(betas.Length)];
            bool zeroA = batch > 1 && rng.Next(6) == 0, zeroB = batch > 1 && rng.Next(6) == 0, zeroC = batch > 1 && rng.Next(8) == 0;
            if (i % 2 == 0)
            {
                CheckFloat(rng, ta, tb, batch, m, n, k, alpha, beta, zeroA, zeroB, zeroC);
            }
            else
            {
                CheckDouble(rng, ta, tb, batch, m, n, k, alpha, beta, zeroA, zeroB, zeroC);
            }
        }
    }

    private static int Size(Random rng) => rng.Next(3) switch
    {
        0 => rng.Next(1, 10),
        1 => new[] { 15, 16, 17, 31, 32, 33, 40, 47, 48, 49 }[rng.Next(10)],
        _ => rng.Next(1, 81),
    };

    private static void CheckFloat(Random rng, bool ta, bool tb, int batch, int m, int n, int k, double alpha, double beta, bool zeroA, bool zeroB,
        bool zeroC = false, int pad = 0) =>
        Check<float>(rng, ta, tb, batch, m, n, k, alpha, beta, zeroA, zeroB, zeroC, pad, v => (float)v, v => v, 5.96e-8);

    private static void CheckDouble(Random rng, bool ta, bool tb, int batch, int m, int n, int k, double alpha, double beta, bool zeroA, bool zeroB,
        bool zeroC = false, int pad = 0) =>
        Check<double>(rng, ta, tb, batch, m, n, k, alpha, beta, zeroA, zeroB, zeroC, pad, v => v, v => v, 1.11e-16);

    /// <summary>
    /// Stride-0 operands: one A or one B for every matrix (the small path transposes a shared op(B) once),
    /// or one C that every matrix updates in turn (C = alpha·AᵢBᵢ + beta·C, i ascending: order matters).
    /// </summary>
    [Theory]
    [MemberData(nameof(InnerLoopShapes))]
    public void SharedOperands_SmallPathMatchesBlockedBitwise_AtEveryThreadCount(bool ta, bool tb, int batch, int m, int n, int k)
    {
        var rng = new Random(m * 1000 + n * 10 + k + 2);
        foreach (var (zeroA, zeroB, zeroC) in new[] { (true, false, false), (false, true, false), (true, true, false), (false, false, true), (false, true, true) })
        {
            foreach (double beta in new[] { 0.0, 1.0, 0.5 })
            {
                CheckFloat(rng, ta, tb, batch, m, n, k, 1.0, beta, zeroA, zeroB, zeroC);
                CheckDouble(rng, ta, tb, batch, m, n, k, -0.75, beta, zeroA, zeroB, zeroC);
            }
        }
    }

    /// <summary>Matrices that are not back to back (strides past m·k, k·n, m·n, the gaps NaN): the small path transposes them one by one.</summary>
    [Theory]
    [MemberData(nameof(InnerLoopShapes))]
    public void PaddedStrides_SmallPathMatchesBlockedBitwise_AtEveryThreadCount(bool ta, bool tb, int batch, int m, int n, int k)
    {
        var rng = new Random(m * 1000 + n * 10 + k + 3);
        foreach (double beta in new[] { 0.0, 1.0 })
        {
            CheckFloat(rng, ta, tb, batch, m, n, k, 1.0, beta, false, false, pad: 5);
            CheckDouble(rng, ta, tb, batch, m, n, k, -0.75, beta, false, false, pad: 3);
        }
    }

    private static unsafe void Check<T>(Random rng, bool ta, bool tb, int batch, int m, int n, int k, double alpha, double beta, bool zeroA, bool zeroB, bool zeroC,
        int pad, Func<double, T> from, Func<T, double> to, double eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long sa = zeroA ? 0 : (long)m * k + pad, sb = zeroB ? 0 : (long)k * n + pad, sc = zeroC ? 0 : (long)m * n + pad;
        var a = Operand(rng, batch, (long)m * k, sa, from);
        var b = Operand(rng, batch, (long)k * n, sb, from);
        var c0 = Operand(rng, batch, (long)m * n, sc, from);
        if (beta == 0)
        {
            // beta == 0 ignores C's old content, NaN included.
            Array.Fill(c0, T.NaN, Guard, c0.Length - 2 * Guard);
        }
        string what = $"{typeof(T).Name} ta={ta} tb={tb} batch={batch} {m}x{n}x{k} alpha={alpha} beta={beta} zeroA={zeroA} zeroB={zeroB} zeroC={zeroC} pad={pad}";
        var blocked = Run(Serial, GemmPath.Blocked, ta, tb, batch, m, n, k, alpha, a, sa, b, sb, beta, c0, sc);
        foreach (var threads in new[] { Serial, Two, Four })
        {
            var auto = Run(threads, GemmPath.Auto, ta, tb, batch, m, n, k, alpha, a, sa, b, sb, beta, c0, sc);
            for (int i = 0; i < auto.Length; i++)
            {
                if (BitConverter.DoubleToInt64Bits(to(auto[i])) != BitConverter.DoubleToInt64Bits(to(blocked[i])))
                {
                    Assert.Fail($"{what}, {threads.MaxDegree} threads: element {i - Guard} is {to(auto[i]):R} on the small path but {to(blocked[i]):R} on the blocked path.");
                }
            }
        }
        if (zeroC)
        {
            // One C updated batch times: the bitwise match with the blocked path above is the check.
            return;
        }
        // The float64 triple loop, to (k + 2)·eps·Σ|terms|: the blocked path is not the only judge.
        for (int bi = 0; bi < batch; bi++)
        {
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double acc = 0, mag = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double av = to(a[Guard + bi * sa + (ta ? (long)p * m + i : (long)i * k + p)]);
                        double bv = to(b[Guard + bi * sb + (tb ? (long)j * k + p : (long)p * n + j)]);
                        acc += av * bv;
                        mag += Math.Abs(av * bv);
                    }
                    long ci = Guard + bi * sc + (long)i * n + j;
                    double old = to(c0[ci]);
                    double expected = alpha * acc + (beta == 0 ? 0 : beta * old);
                    double tol = (k + 2) * eps * (Math.Abs(alpha) * mag + (beta == 0 ? 0 : Math.Abs(beta * old)));
                    double got = to(blocked[ci]);
                    if (!(Math.Abs(got - expected) <= tol))
                    {
                        Assert.Fail($"{what}: C[{bi}, {i}, {j}] = {got:R}, the float64 oracle says {expected:R} (tolerance {tol:E2}).");
                    }
                }
            }
        }
    }

    /// <summary>batch matrices of size values stride apart (0: one shared matrix), NaN in the gaps, between guards.</summary>
    private static T[] Operand<T>(Random rng, int batch, long size, long stride, Func<double, T> from) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var x = Guarded(rng, stride == 0 ? size : (batch - 1) * stride + size, from);
        for (long i = 0; stride > size && i < batch - 1; i++)
        {
            Array.Fill(x, T.NaN, (int)(Guard + i * stride + size), (int)(stride - size));
        }
        return x;
    }

    /// <summary>count values in [-1, 1) between <see cref="Guard"/> NaNs on each side.</summary>
    private static T[] Guarded<T>(Random rng, long count, Func<double, T> from) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var x = new T[count + 2 * Guard];
        Array.Fill(x, T.NaN);
        for (long i = 0; i < count; i++)
        {
            x[Guard + i] = from(rng.NextDouble() * 2 - 1);
        }
        return x;
    }

    private static unsafe T[] Run<T>(Parallelism threads, GemmPath path, bool ta, bool tb, int batch, int m, int n, int k, double alpha,
        T[] a, long sa, T[] b, long sb, double beta, T[] c0, long sc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var c = (T[])c0.Clone();
        fixed (T* pa = a, pb = b, pc = c)
        {
            Gemm.Run(threads, ta, tb, batch, m, n, k, alpha, pa + Guard, sa, pb + Guard, sb, beta, pc + Guard, sc, path);
        }
        for (int i = 0; i < Guard; i++)
        {
            Assert.True(T.IsNaN(c[i]) && T.IsNaN(c[c.Length - 1 - i]), $"{path} GEMM wrote outside C ({i} from an end).");
        }
        return c;
    }
}
