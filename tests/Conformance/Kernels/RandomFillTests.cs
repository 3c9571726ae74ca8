using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The Reference random fill (AVX-512 groups of eight, scalar tails and fallback) against the Philox
/// specification computed here one element at a time, bit for bit: every distribution and dtype, seeds
/// with either or both 32-bit halves set, offsets whose low word wraps into the high word (and the 64-bit
/// counter itself wrapping), lengths around the vector width, bounds one ulp apart, equal and reversed.
/// </summary>
public sealed class RandomFillTests
{
    private static readonly ulong[] Seeds = [0, 1, 11, 0xFFFF_FFFF, 1UL << 32, 0x1234_5678_9abc_def0, ulong.MaxValue];

    private static readonly ulong[] Offsets =
        [0, 1, 5, 8, 1000, (1UL << 32) - 70, (1UL << 32) - 8, (1UL << 32) - 3, 1UL << 32, (3UL << 32) - 1, ulong.MaxValue - 4, 0xDEAD_BEEF_0000_0007];

    private static readonly int[] Lengths = [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 64, 65, 127, 1000, 1003];

    private static readonly (double A, double B)[] UniformBounds =
        [(0, 1), (-3, 5), (1, MathF.BitIncrement(1f)), (1, Math.BitIncrement(1.0)), (2, 2), (5, -3), (-1e-30, 1e30), (0.1, 0.3)];

    private static readonly (double Mean, double Std)[] NormalParameters = [(0, 1), (0.5, 2), (-1, 1e-3), (3, 0)];

    [Fact]
    public void Uniform_MatchesPhiloxSpec_Bitwise() => CheckAll(RandomDistribution.Uniform, UniformBounds);

    [Fact]
    public void Normal_MatchesPhiloxSpec_Bitwise() => CheckAll(RandomDistribution.Normal, NormalParameters);

    /// <summary>Lengths and offsets at random, beyond the fixed grid, for both distributions.</summary>
    [Fact]
    public void RandomCases_MatchPhiloxSpec_Bitwise()
    {
        var rng = new Random(4242);
        for (int i = 0; i < 400; i++)
        {
            ulong seed = (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40);
            ulong offset = rng.Next(3) switch
            {
                0 => (ulong)rng.Next(1000),
                1 => ((ulong)rng.Next(1, 5) << 32) - (ulong)rng.Next(1, 40),
                _ => (ulong)rng.NextInt64(),
            };
            int length = rng.Next(300);
            var distribution = rng.Next(2) == 0 ? RandomDistribution.Uniform : RandomDistribution.Normal;
            double a = Math.Round(rng.NextDouble() * 10 - 5, rng.Next(4));
            double b = distribution == RandomDistribution.Uniform ? a + Math.Round(rng.NextDouble() * 10, rng.Next(4)) : rng.NextDouble() * 3;
            Check<float>(distribution, seed, offset, length, a, b);
            Check<double>(distribution, seed, offset, length, a, b);
        }
    }

    /// <summary>Above the parallel threshold the range is drawn in chunks on several threads: same bits as the spec.</summary>
    [Theory]
    [InlineData(RandomDistribution.Uniform)]
    [InlineData(RandomDistribution.Normal)]
    public void ParallelChunks_MatchPhiloxSpec_Bitwise(RandomDistribution distribution)
    {
        const ulong Seed = 0x1234_5678_9abc_def0, Offset = (1UL << 32) - 70_001;
        const int N = 150_003;
        double a = distribution == RandomDistribution.Uniform ? -3 : 0.5;
        double b = distribution == RandomDistribution.Uniform ? 5 : 2;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var f = new float[N];
            var d = new double[N];
            RandomFill.Fill<float>(new Parallelism(threads), f, distribution, Seed, Offset, a, b);
            RandomFill.Fill<double>(new Parallelism(threads), d, distribution, Seed, Offset, a, b);
            for (int i = 0; i < N; i++)
            {
                ulong counter = Offset + (ulong)i;
                Same(ExpectedSingle(distribution, Seed, counter, a, b), f[i], distribution, Seed, Offset, N, a, b, i);
                Same(ExpectedDouble(distribution, Seed, counter, a, b), d[i], distribution, Seed, Offset, N, a, b, i);
            }
        }
    }

    /// <summary>The vector path only runs where the machine has AVX-512; elsewhere the tests above check the scalar path alone.</summary>
    [Fact]
    public void VectorPath_RunsOnThisMachine()
    {
        if (!RandomFill.VectorPathSupported)
        {
            Assert.Skip("No AVX-512F/DQ here: the random fill runs its scalar path only.");
        }
        // The scalar path (vector: false) and the default agree as well.
        var scalar = new float[1003];
        var vector = new float[1003];
        RandomFill.FillRange<float>(scalar, RandomDistribution.Uniform, 3, (1UL << 32) - 500, 0, 1, vector: false);
        RandomFill.FillRange<float>(vector, RandomDistribution.Uniform, 3, (1UL << 32) - 500, 0, 1);
        Assert.Equal(scalar, vector);
    }

    private static void CheckAll(RandomDistribution distribution, (double, double)[] parameters)
    {
        foreach (ulong seed in Seeds)
        {
            foreach (ulong offset in Offsets)
            {
                foreach (int length in Lengths)
                {
                    foreach (var (a, b) in parameters)
                    {
                        Check<float>(distribution, seed, offset, length, a, b);
                        Check<double>(distribution, seed, offset, length, a, b);
                    }
                }
            }
        }
    }

    private static void Check<T>(RandomDistribution distribution, ulong seed, ulong offset, int length, double a, double b)
        where T : unmanaged
    {
        var y = new T[length];
        RandomFill.FillRange<T>(y, distribution, seed, offset, a, b);
        for (int i = 0; i < length; i++)
        {
            ulong counter = offset + (ulong)i;
            if (typeof(T) == typeof(float))
            {
                Same(ExpectedSingle(distribution, seed, counter, a, b), (float)(object)y[i], distribution, seed, offset, length, a, b, i);
            }
            else
            {
                Same(ExpectedDouble(distribution, seed, counter, a, b), (double)(object)y[i], distribution, seed, offset, length, a, b, i);
            }
        }
    }

    /// <summary>The draw in double: a + (b - a)·u for uniforms, a + b·n for normals.</summary>
    private static double Draw(RandomDistribution distribution, ulong seed, ulong counter, double a, double b)
    {
        if (distribution == RandomDistribution.Uniform)
        {
            double u = Philox.Uniform(seed, counter);
            double scaled = (b - a) * u;
            return a + scaled;
        }
        double n = Philox.Normal(seed, counter);
        double spread = b * n;
        return a + spread;
    }

    /// <summary>Rounded once to float; a uniform draw rounded up to high (when high > low) becomes the float below it.</summary>
    private static float ExpectedSingle(RandomDistribution distribution, ulong seed, ulong counter, double a, double b)
    {
        float f = (float)Draw(distribution, seed, counter, a, b);
        return distribution == RandomDistribution.Uniform && b > a && f >= (float)b ? MathF.BitDecrement((float)b) : f;
    }

    private static double ExpectedDouble(RandomDistribution distribution, ulong seed, ulong counter, double a, double b)
    {
        double v = Draw(distribution, seed, counter, a, b);
        return distribution == RandomDistribution.Uniform && b > a && v >= b ? Math.BitDecrement(b) : v;
    }

    private static void Same(double expected, double actual, RandomDistribution distribution, ulong seed, ulong offset, int length, double a, double b, int i)
    {
        if (BitConverter.DoubleToInt64Bits(expected) != BitConverter.DoubleToInt64Bits(actual))
        {
            Assert.Fail($"{distribution} seed=0x{seed:X} offset=0x{offset:X} length={length} a={a:R} b={b:R}: element {i} is {actual:R}, the spec gives {expected:R}.");
        }
    }
}
