namespace Higher.Nn;

/// <summary>y = max(x, 0) (torch.nn.ReLU).</summary>
public sealed class Relu : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Relu();
    }
}

/// <summary>y = x for x &gt; 0, slope·x otherwise (torch.nn.LeakyReLU).</summary>
public sealed class LeakyRelu(double negativeSlope = 0.01) : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <summary>Slope for negative inputs.</summary>
    public double NegativeSlope { get; } = negativeSlope;

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"negative_slope={Py(NegativeSlope)}";

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.LeakyRelu(NegativeSlope);
    }
}

/// <summary>y = tanh x (torch.nn.Tanh).</summary>
public sealed class Tanh : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Tanh();
    }
}

/// <summary>y = 1/(1 + e^-x) (torch.nn.Sigmoid).</summary>
public sealed class Sigmoid : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Sigmoid();
    }
}

/// <summary>y = ln(1 + e^(βx))/β, and y = x where βx &gt; threshold (torch.nn.Softplus).</summary>
public sealed class Softplus(double beta = 1, double threshold = 20) : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <summary>β.</summary>
    public double Beta { get; } = beta;

    /// <summary>Above this value of βx the function is taken as linear.</summary>
    public double Threshold { get; } = threshold;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Softplus(Beta, Threshold);
    }
}

/// <summary>y = x·Φ(x), or its tanh approximation (torch.nn.GELU with approximate='tanh').</summary>
public sealed class Gelu(bool tanhApproximation = false) : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <summary>Whether the tanh approximation is used.</summary>
    public bool TanhApproximation { get; } = tanhApproximation;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Gelu(TanhApproximation);
    }
}

/// <summary>
/// Inverted dropout (torch.nn.Dropout): in training mode each element is zeroed with probability
/// p and the survivors are scaled by 1/(1 - p); in evaluation mode y = x. Masks are drawn from
/// the layer's <see cref="Generator"/>, so a seeded run repeats exactly.
/// </summary>
public sealed class Dropout : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <summary>Dropout with probability <paramref name="p"/>, drawing masks from <paramref name="generator"/> (default: <see cref="Higher.Generator.Default"/> at each call).</summary>
    public Dropout(double p = 0.5, Generator? generator = null)
    {
        if (!(p is >= 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout probability has to be between 0 and 1.");
        }
        P = p;
        Generator = generator;
    }

    /// <summary>Probability of zeroing an element.</summary>
    public double P { get; }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"p={Py(P)}, inplace=False";

    /// <summary>The mask generator; null uses <see cref="Higher.Generator.Default"/>.</summary>
    public Generator? Generator { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Apply(input, P, Training, Generator);

    /// <summary>Functional dropout: x·mask/(1 - p) with mask ~ Bernoulli(1 - p) when training, else x.</summary>
    public static Tensor Apply(Tensor input, double p, bool training, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (!training || p == 0)
        {
            return input;
        }
        if (p == 1)
        {
            return input * 0.0;
        }
        var keep = Tensor.Rand(input.Shape, input.DType, generator, input.Device) < 1 - p;
        var noise = Tensor.Where(keep, input.ConstantScalar(1 / (1 - p)), input.ConstantScalar(0));
        return input * noise;
    }
}
