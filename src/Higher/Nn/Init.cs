namespace Higher.Nn;

/// <summary>Which fan a Kaiming initialization preserves.</summary>
public enum FanMode
{
    /// <summary>The variance of the forward pass (fan_in).</summary>
    FanIn,
    /// <summary>The variance of the backward pass (fan_out).</summary>
    FanOut,
}

/// <summary>Nonlinearities known to <see cref="Init.CalculateGain"/>.</summary>
public enum Nonlinearity
{
    /// <summary>Gain 1.</summary>
    Linear,
    /// <summary>Gain 1.</summary>
    Sigmoid,
    /// <summary>Gain 5/3.</summary>
    Tanh,
    /// <summary>Gain √2.</summary>
    Relu,
    /// <summary>Gain √(2/(1 + slope²)).</summary>
    LeakyRelu,
    /// <summary>Gain 3/4.</summary>
    Selu,
}

/// <summary>
/// In-place initializers as torch.nn.init (uniform_, normal_, zeros_, kaiming_uniform_,
/// xavier_uniform_, ...). They overwrite a tensor's values without recording (a parameter's
/// <see cref="Parameter.Data"/> may be passed) and draw from a <see cref="Generator"/>
/// (default <see cref="Generator.Default"/>), so initializations are reproducible.
/// </summary>
public static class Init
{
    /// <summary>Fills with U(a, b).</summary>
    public static Tensor Uniform(Tensor tensor, double a = 0, double b = 1, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return Overwrite(tensor, Tensor.Uniform(tensor.Shape, a, b, FloatDType(tensor), generator, tensor.Device));
    }

    /// <summary>Fills with N(mean, std²).</summary>
    public static Tensor Normal(Tensor tensor, double mean = 0, double std = 1, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return Overwrite(tensor, Tensor.Normal(tensor.Shape, mean, std, FloatDType(tensor), generator, tensor.Device));
    }

    /// <summary>Fills with <paramref name="value"/>.</summary>
    public static Tensor Constant(Tensor tensor, double value)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using (Autograd.NoGrad())
        {
            tensor.FillInPlace(value);
        }
        return tensor;
    }

    /// <summary>Fills with 0.</summary>
    public static Tensor Zeros(Tensor tensor) => Constant(tensor, 0);

    /// <summary>Fills with 1.</summary>
    public static Tensor Ones(Tensor tensor) => Constant(tensor, 1);

    /// <summary>The recommended gain for a nonlinearity (torch.nn.init.calculate_gain); <paramref name="negativeSlope"/> is for LeakyRelu (default 0.01).</summary>
    public static double CalculateGain(Nonlinearity nonlinearity, double? negativeSlope = null) => nonlinearity switch
    {
        Nonlinearity.Linear or Nonlinearity.Sigmoid => 1,
        Nonlinearity.Tanh => 5.0 / 3,
        Nonlinearity.Relu => Math.Sqrt(2.0),
        Nonlinearity.LeakyRelu => Math.Sqrt(2.0 / (1 + Math.Pow(negativeSlope ?? 0.01, 2))),
        Nonlinearity.Selu => 3.0 / 4,
        _ => throw new ArgumentOutOfRangeException(nameof(nonlinearity), nonlinearity, "Unknown nonlinearity."),
    };

    /// <summary>
    /// (fan_in, fan_out) of a weight of rank ≥ 2: dimension 1 and dimension 0, each times the
    /// product of the remaining (receptive field) dimensions.
    /// </summary>
    public static (int FanIn, int FanOut) CalculateFanInAndFanOut(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.Rank < 2)
        {
            throw new ArgumentException($"Fan in and fan out can not be computed for a tensor with fewer than 2 dimensions; got {tensor.Describe()}.", nameof(tensor));
        }
        int receptive = 1;
        for (int i = 2; i < tensor.Rank; i++)
        {
            receptive *= tensor.Shape[i];
        }
        return (tensor.Shape[1] * receptive, tensor.Shape[0] * receptive);
    }

    /// <summary>
    /// He initialization, uniform: U(-bound, bound) with bound = gain·√(3/fan), gain from
    /// <paramref name="nonlinearity"/> with slope <paramref name="a"/>. Linear layers use a = √5,
    /// which gives bound = 1/√fan_in.
    /// </summary>
    public static Tensor KaimingUniform(Tensor tensor, double a = 0, FanMode mode = FanMode.FanIn, Nonlinearity nonlinearity = Nonlinearity.LeakyRelu, Generator? generator = null)
    {
        double std = KaimingStd(tensor, a, mode, nonlinearity);
        double bound = Math.Sqrt(3.0) * std;
        return Uniform(tensor, -bound, bound, generator);
    }

    /// <summary>He initialization, normal: N(0, (gain/√fan)²).</summary>
    public static Tensor KaimingNormal(Tensor tensor, double a = 0, FanMode mode = FanMode.FanIn, Nonlinearity nonlinearity = Nonlinearity.LeakyRelu, Generator? generator = null) =>
        Normal(tensor, 0, KaimingStd(tensor, a, mode, nonlinearity), generator);

    /// <summary>Glorot initialization, uniform: U(-bound, bound) with bound = gain·√(6/(fan_in + fan_out)).</summary>
    public static Tensor XavierUniform(Tensor tensor, double gain = 1, Generator? generator = null)
    {
        var (fanIn, fanOut) = CalculateFanInAndFanOut(tensor);
        double std = gain * Math.Sqrt(2.0 / (fanIn + fanOut));
        double bound = Math.Sqrt(3.0) * std;
        return Uniform(tensor, -bound, bound, generator);
    }

    /// <summary>Glorot initialization, normal: N(0, gain²·2/(fan_in + fan_out)).</summary>
    public static Tensor XavierNormal(Tensor tensor, double gain = 1, Generator? generator = null)
    {
        var (fanIn, fanOut) = CalculateFanInAndFanOut(tensor);
        return Normal(tensor, 0, gain * Math.Sqrt(2.0 / (fanIn + fanOut)), generator);
    }

    private static double KaimingStd(Tensor tensor, double a, FanMode mode, Nonlinearity nonlinearity)
    {
        var (fanIn, fanOut) = CalculateFanInAndFanOut(tensor);
        int fan = mode == FanMode.FanIn ? fanIn : fanOut;
        if (fan == 0)
        {
            throw new ArgumentException($"Initializing a tensor with a zero-element fan: {tensor.Describe()}.", nameof(tensor));
        }
        return CalculateGain(nonlinearity, a) / Math.Sqrt(fan);
    }

    private static DType FloatDType(Tensor tensor) => tensor.DType.IsFloatingPoint()
        ? tensor.DType
        : throw new ArgumentException($"Random initialization needs a floating-point tensor; got {tensor.Describe()}.", nameof(tensor));

    private static Tensor Overwrite(Tensor tensor, Tensor values)
    {
        using (Autograd.NoGrad())
        {
            tensor.CopyFrom(values);
        }
        return tensor;
    }
}
