namespace Higher.Nn;

/// <summary>
/// Layer normalization over the trailing <c>normalizedShape</c> dimensions (torch.nn.LayerNorm):
/// y = (x - E[x])/√(Var[x] + ε)·γ + β with the biased variance; γ starts at 1, β at 0.
/// </summary>
public sealed class LayerNorm : Module
{
    private Parameter? _weight;
    private Parameter? _bias;
    private readonly int[] _normalizedShape;

    /// <summary>Normalizes over the last dimensions, of sizes <paramref name="normalizedShape"/>.</summary>
    public LayerNorm(int[] normalizedShape, double eps = 1e-5, bool elementwiseAffine = true)
    {
        ArgumentNullException.ThrowIfNull(normalizedShape);
        if (normalizedShape.Length == 0 || normalizedShape.Any(d => d <= 0))
        {
            throw new ArgumentException($"LayerNorm needs a non-empty normalized shape of positive sizes; got [{string.Join(", ", normalizedShape)}].", nameof(normalizedShape));
        }
        _normalizedShape = (int[])normalizedShape.Clone();
        Eps = eps;
        _weight = RegisterParameter("weight", elementwiseAffine ? Tensor.Ones(_normalizedShape) : null);
        _bias = RegisterParameter("bias", elementwiseAffine ? Tensor.Zeros(_normalizedShape) : null);
    }

    /// <summary>Normalizes over the last dimension, of size <paramref name="normalizedSize"/>.</summary>
    public LayerNorm(int normalizedSize, double eps = 1e-5, bool elementwiseAffine = true) : this([normalizedSize], eps, elementwiseAffine)
    {
    }

    /// <summary>The trailing dimensions normalized over.</summary>
    public IReadOnlyList<int> NormalizedShape => _normalizedShape;

    /// <summary>ε added to the variance.</summary>
    public double Eps { get; }

    /// <summary>γ, or null without elementwise affine.</summary>
    public Parameter? Weight => _weight;

    /// <summary>β, or null without elementwise affine.</summary>
    public Parameter? Bias => _bias;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int k = _normalizedShape.Length;
        bool matches = input.Rank >= k;
        for (int i = 0; matches && i < k; i++)
        {
            matches = input.Shape[input.Rank - k + i] == _normalizedShape[i];
        }
        if (!matches)
        {
            throw new ArgumentException($"LayerNorm over [{string.Join(", ", _normalizedShape)}] got input {input.Shape}, whose trailing dimensions differ.", nameof(input));
        }
        var axes = Enumerable.Range(input.Rank - k, k).ToArray();
        var centered = input - input.Mean(axes, keepDim: true);
        var variance = (centered * centered).Mean(axes, keepDim: true);
        var y = centered * (variance + Eps).Sqrt().Reciprocal();
        if (_weight is not null)
        {
            y = y * _weight.Value;
        }
        if (_bias is not null)
        {
            y = y + _bias.Value;
        }
        return y;
    }

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter)
    {
        if (name == "weight")
        {
            _weight = parameter;
        }
        else if (name == "bias")
        {
            _bias = parameter;
        }
    }
}

/// <summary>
/// Batch normalization over [N, C] or [N, C, L] inputs (torch.nn.BatchNorm1d), sharing
/// <see cref="BatchNorm2d"/>'s implementation: training mode normalizes with the batch mean and
/// biased variance over N (and L) and, when tracking, updates running_mean ← (1-m)·running_mean +
/// m·mean and running_var ← (1-m)·running_var + m·unbiased variance, with m = momentum, or
/// 1/num_batches_tracked when momentum is null (a cumulative moving average). Evaluation mode with
/// tracked statistics uses the running ones. Buffers are replaced through
/// <see cref="ModuleBuffer.Value"/>, so a functional call updates its own copies.
/// </summary>
public sealed class BatchNorm1d : Module
{
    private readonly BatchNormState _state;

    /// <summary>Batch norm over <paramref name="numFeatures"/> channels.</summary>
    /// <param name="numFeatures">C.</param>
    /// <param name="eps">Added to the variance.</param>
    /// <param name="momentum">Weight of the new batch in the running statistics; null for a cumulative average.</param>
    /// <param name="affine">Learnable γ (ones) and β (zeros).</param>
    /// <param name="trackRunningStats">Keep running statistics and use them in evaluation mode.</param>
    public BatchNorm1d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numFeatures);
        NumFeatures = numFeatures;
        Eps = eps;
        Momentum = momentum;
        TrackRunningStats = trackRunningStats;
        _state = new BatchNormState(
            RegisterParameter("weight", affine ? Tensor.Ones([numFeatures]) : null),
            RegisterParameter("bias", affine ? Tensor.Zeros([numFeatures]) : null),
            RegisterBuffer("running_mean", trackRunningStats ? Tensor.Zeros([numFeatures]) : null),
            RegisterBuffer("running_var", trackRunningStats ? Tensor.Ones([numFeatures]) : null),
            RegisterBuffer("num_batches_tracked", trackRunningStats ? Tensor.Zeros(Shape.Scalar, DType.Int64) : null));
    }

    /// <summary>C.</summary>
    public int NumFeatures { get; }

    /// <summary>ε added to the variance.</summary>
    public double Eps { get; }

    /// <summary>Weight of each new batch in the running statistics; null: cumulative average.</summary>
    public double? Momentum { get; set; }

    /// <summary>Whether running statistics are kept.</summary>
    public bool TrackRunningStats { get; }

    /// <summary>γ [C], or null without affine.</summary>
    public Parameter? Weight => _state.Weight;

    /// <summary>β [C], or null without affine.</summary>
    public Parameter? Bias => _state.Bias;

    /// <summary>The running-mean buffer handle (its value is null without tracking).</summary>
    public ModuleBuffer RunningMean => _state.RunningMean;

    /// <summary>The running-variance buffer handle (its value is null without tracking).</summary>
    public ModuleBuffer RunningVar => _state.RunningVar;

    /// <summary>The batch-count buffer handle, an int64 scalar (its value is null without tracking).</summary>
    public ModuleBuffer NumBatchesTracked => _state.NumBatchesTracked;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank is not (2 or 3) || input.Shape[1] != NumFeatures)
        {
            throw new ArgumentException($"BatchNorm1d({NumFeatures}) expects input [N, {NumFeatures}] or [N, {NumFeatures}, L]; got {input.Describe()}.", nameof(input));
        }
        return _state.Forward(input, Training, TrackRunningStats, Momentum, Eps);
    }

    /// <summary>Resets the running statistics to mean 0, variance 1 and no batches (through the buffers).</summary>
    public void ResetRunningStats() => _state.ResetRunningStats();

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter) => _state.OnParameterReplaced(name, parameter);
}
