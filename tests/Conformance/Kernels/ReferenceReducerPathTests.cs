using System.Numerics;
using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The Reference column sums ([outer, R, inner] to [outer, inner], a SumTo of [25, 10, 40] to [25, 1, 40])
/// with their accumulators in registers, against the two-buffer form they replaced, bit for bit:
/// random widths around the vector sizes, row counts across the 64-row block, strides wider than
/// the rows, and values that include -0, infinities, NaN and magnitudes far apart.
/// </summary>
public sealed class ReferenceReducerPathTests
{
    [Fact]
    public void SumColumns_MatchesTheTwoBufferForm_Bitwise()
    {
        var rng = new Random(1201);
        for (int i = 0; i < 600; i++)
        {
            int inner = rng.Next(3) switch { 0 => rng.Next(1, 9), 1 => new[] { 8, 15, 16, 31, 32, 33, 40, 63, 64, 65 }[rng.Next(10)], _ => rng.Next(1, 300) };
            int r = rng.Next(3) switch { 0 => rng.Next(1, 12), 1 => new[] { 63, 64, 65, 128, 129 }[rng.Next(5)], _ => rng.Next(1, 200) };
            long stride = inner + (rng.Next(3) == 0 ? rng.Next(1, 20) : 0);
            bool special = rng.Next(4) == 0;
            Compare<float>(rng, r, inner, stride, special, v => (float)v);
            Compare<double>(rng, r, inner, stride, special, v => v);
        }
    }

    private static unsafe void Compare<T>(Random rng, int r, int inner, long stride, bool special, Func<double, T> from)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var x = new T[(r - 1) * stride + inner];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = special && rng.Next(8) == 0
                ? new[] { T.NegativeZero, T.PositiveInfinity, T.NegativeInfinity, T.NaN, from(1e30), from(-1e-30) }[rng.Next(6)]
                : from((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-3, 4)));
        }
        var expected = new T[inner];
        var actual = new T[inner];
        fixed (T* px = x, pe = expected, pa = actual)
        {
            Reducers.SumRows(px, r, stride, pe, new double[inner], new double[inner]);
            Reducers.SumColumns(px, r, stride, pa, inner);
        }
        for (int i = 0; i < inner; i++)
        {
            if (double.CreateTruncating(actual[i]) is var a && double.CreateTruncating(expected[i]) is var e
                && BitConverter.DoubleToInt64Bits(a) != BitConverter.DoubleToInt64Bits(e))
            {
                Assert.Fail($"{typeof(T).Name} r={r} inner={inner} stride={stride}: column {i} is {a:R}, the two-buffer form gives {e:R}.");
            }
        }
    }

    [Fact]
    public void PairwiseSum4_HasPairwiseSumsBits_ForEachOfItsFourRows()
    {
        // Lengths around the 16-lane blocks and the 256-element base of the split tree (its halves, odd tails), with
        // -0, infinities, NaN and magnitudes far apart in some rows.
        var rng = new Random(1202);
        int[] lengths = [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 255, 256, 257, 300, 511, 512, 513, 676, 1000, 1025];
        for (int i = 0; i < 300; i++)
        {
            int n = i < lengths.Length ? lengths[i] : rng.Next(1, 1500);
            bool special = rng.Next(4) == 0;
            CompareFour<float>(rng, n, special, v => (float)v);
            CompareFour<double>(rng, n, special, v => v);
        }
    }

    private static unsafe void CompareFour<T>(Random rng, int n, bool special, Func<double, T> from)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!Reducers.HasSum4)
        {
            return;
        }
        // Four rows with gaps between them, so that a read past a row's end would see another row's values.
        int stride = n + rng.Next(0, 5);
        var x = new T[3 * stride + n];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = special && rng.Next(8) == 0
                ? new[] { T.NegativeZero, T.PositiveInfinity, T.NegativeInfinity, T.NaN, from(1e30), from(-1e-30) }[rng.Next(6)]
                : from((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-3, 4)));
        }
        var four = new double[4];
        fixed (T* px = x)
        fixed (double* pf = four)
        {
            Reducers.PairwiseSum4(px, px + stride, px + 2 * stride, px + 3 * stride, n, pf);
            for (int k = 0; k < 4; k++)
            {
                double e = Reducers.PairwiseSum(ref px[k * stride], n, null);
                if (BitConverter.DoubleToInt64Bits(e) != BitConverter.DoubleToInt64Bits(four[k]))
                {
                    Assert.Fail($"{typeof(T).Name} n={n}: row {k} sums to {four[k]:R}, PairwiseSum gives {e:R}.");
                }
            }
        }
    }
}
