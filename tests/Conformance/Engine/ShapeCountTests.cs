namespace Higher.Conformance.Engine;

/// <summary>A shape refuses an element count beyond a long, naming the dimensions, and accepts every count that fits (a zero anywhere makes it 0).</summary>
public sealed class ShapeCountTests
{
    [Theory]
    [InlineData(new[] { 1 << 30, 1 << 30, 4 })]             // 2^62
    [InlineData(new[] { 1 << 30, 1 << 30, 7 })]             // 7·2^60 < 2^63
    [InlineData(new[] { 1 << 30, 1 << 30, 1 << 30, 0 })]   // 0 elements, whatever comes before
    [InlineData(new[] { 0, 1 << 30, 1 << 30, 1 << 30 })]
    [InlineData(new[] { int.MaxValue, int.MaxValue })]      // two ints always fit
    [InlineData(new[] { 3, 5, 7, 11 })]
    public void CountsThatFit_AreAccepted(int[] dims)
    {
        long expected = dims.Aggregate(1L, (n, d) => n * d);
        Assert.Equal(expected, new Shape(dims).Numel);
    }

    [Theory]
    [InlineData(new[] { 1 << 30, 1 << 30, 8 }, 2)]          // exactly 2^63
    [InlineData(new[] { 1 << 30, 1 << 30, 1 << 30 }, 2)]
    [InlineData(new[] { 1 << 30, 1 << 30, 8, 1 }, 2)]
    [InlineData(new[] { 2, 1 << 30, 1 << 30, 1 << 30 }, 3)]
    public void CountsBeyondALong_Throw_NamingTheDimensions(int[] dims, int at)
    {
        var e = Assert.Throws<ArgumentException>(() => new Shape(dims));
        Assert.Contains($"[{string.Join(", ", dims)}]", e.Message);
        Assert.Contains($"dimensions 0..{at}", e.Message);
    }
}
