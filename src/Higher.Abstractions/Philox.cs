using System.Runtime.CompilerServices;

namespace Higher;

/// <summary>
/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
/// counter-based generator, so element n of a draw depends only on (seed, n) and every backend,
/// CPU or GPU, draws the same numbers in any order. This is the specification every backend follows.
/// Counter = (lo32(n), hi32(n), 0, 0); key = (lo32(seed), hi32(seed)).
/// </summary>
public static class Philox
{
    /// <summary>The round multiplier of counter word 0.</summary>
    public const uint M0 = 0xD2511F53;

    /// <summary>The round multiplier of counter word 2.</summary>
    public const uint M1 = 0xCD9E8D57;

    /// <summary>The Weyl increment of key word 0 per round.</summary>
    public const uint W0 = 0x9E3779B9;

    /// <summary>The Weyl increment of key word 1 per round.</summary>
    public const uint W1 = 0xBB67AE85;

    /// <summary>2^-53: a 53-bit integer times this is a double in [0, 1).</summary>
    public const double TwoPow53Inv = 1.0 / 9007199254740992.0;

    /// <summary>The four 32-bit output words of Philox4x32-10 for counter <paramref name="counter"/> and key <paramref name="seed"/>.</summary>
    public static (uint X0, uint X1, uint X2, uint X3) Block(ulong seed, ulong counter)
    {
        uint c0 = (uint)counter, c1 = (uint)(counter >> 32), c2 = 0, c3 = 0;
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int round = 0; round < 10; round++)
        {
            ulong p0 = (ulong)M0 * c0;
            ulong p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
            uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            c0 = hi1 ^ c1 ^ k0;
            c1 = lo1;
            c2 = hi0 ^ c3 ^ k1;
            c3 = lo0;
            k0 += W0;
            k1 += W1;
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>Uniform double in [0, 1) for element <paramref name="counter"/>: the top 53 bits of (X0 &lt;&lt; 32 | X1) times 2^-53.</summary>
    public static double Uniform(ulong seed, ulong counter)
    {
        var (x0, x1, _, _) = Block(seed, counter);
        return ToUnit(x0, x1);
    }

    /// <summary>
    /// Standard normal for element <paramref name="counter"/> by Box-Muller:
    /// u1 = unit(X0, X1), u2 = unit(X2, X3), n = sqrt(-2 ln(1 - u1)) · cos(2π u2).
    /// </summary>
    public static double Normal(ulong seed, ulong counter)
    {
        var (x0, x1, x2, x3) = Block(seed, counter);
        double u1 = ToUnit(x0, x1);
        double u2 = ToUnit(x2, x3);
        return Math.Sqrt(-2.0 * Math.Log(1.0 - u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double ToUnit(uint hi, uint lo) => ((((ulong)hi << 32) | lo) >> 11) * TwoPow53Inv;
}
