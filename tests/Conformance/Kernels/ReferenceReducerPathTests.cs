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
}
