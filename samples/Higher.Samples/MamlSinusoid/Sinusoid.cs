namespace Higher.Samples.MamlSinusoid;

/// <summary>
/// The sinusoid regression tasks of the MAML paper: y = A·sin(x - φ) with amplitude A ~ U[0.1, 5],
/// phase φ ~ U[0, π], inputs x ~ U[-5, 5]. Every draw comes from a seeded Philox generator.
/// </summary>
public sealed class SinusoidTask(double amplitude, double phase)
{
    public double Amplitude { get; } = amplitude;

    public double Phase { get; } = phase;

    public static SinusoidTask Sample(Generator g) =>
        new(0.1 + 4.9 * g.NextDouble(), Math.PI * g.NextDouble());

    /// <summary>K points (x [K, 1], y [K, 1]) on <paramref name="device"/> (the CPU by default); drawn on the host, so the same on every device.</summary>
    public (Tensor X, Tensor Y) Draw(int k, Generator g, DType dtype, Device? device = null)
    {
        var x = new double[k];
        var y = new double[k];
        for (int i = 0; i < k; i++)
        {
            x[i] = -5 + 10 * g.NextDouble();
            y[i] = Amplitude * Math.Sin(x[i] - Phase);
        }
        return (Tensor.FromArray(x, [k, 1], device).To(dtype), Tensor.FromArray(y, [k, 1], device).To(dtype));
    }
}
