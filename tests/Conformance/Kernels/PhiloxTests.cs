namespace Higher.Conformance.Kernels;

/// <summary>
/// The Philox specification itself (Higher.Abstractions' <see cref="Philox"/>), which every backend's
/// random kernel is checked against. Backend-independent, so it lives outside the per-backend suites:
/// there it would pass in a binding whose backend cannot run.
/// </summary>
public sealed class PhiloxTests
{
    [Fact]
    public void Philox_Block_MatchesRandom123KnownAnswer()
    {
        // Random123 kat_vectors, philox4x32_10: counter = key = 0 gives these four words.
        var (x0, x1, x2, x3) = Philox.Block(0, 0);
        Assert.Equal((0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u), (x0, x1, x2, x3));
    }
}
