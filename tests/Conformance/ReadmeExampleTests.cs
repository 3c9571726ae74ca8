namespace Higher.Conformance;

/// <summary>The README's ten-line example, checked against its closed forms.</summary>
public sealed class ReadmeExampleTests
{
    [Fact]
    public void SecondDerivativeExample_MatchesClosedForms()
    {
        var x = Tensor.FromArray(new[] { 0.5, 1.0, 2.0 }).WithRequiresGrad();
        var y = (x * x * x).Sin().Sum();
        var dy = Autograd.Grad(y, x, createGraph: true);
        var d2y = Autograd.Grad(dy.Sum(), x);

        double[] xs = [0.5, 1.0, 2.0];
        var expected1 = xs.Select(v => 3 * v * v * Math.Cos(v * v * v)).ToArray();
        var expected2 = xs.Select(v => (6 * v * Math.Cos(v * v * v)) - (9 * Math.Pow(v, 4) * Math.Sin(v * v * v))).ToArray();
        var got1 = dy.ToDoubleArray();
        var got2 = d2y.ToDoubleArray();
        for (int i = 0; i < xs.Length; i++)
        {
            Assert.Equal(expected1[i], got1[i], 1e-12);
            Assert.Equal(expected2[i], got2[i], 1e-12);
        }
    }
}
