namespace Higher.Nn;

/// <summary>
/// Layer normalization over the trailing <c>normalizedShape</c> dimensions (torch.nn.LayerNorm):
/// y = (x - E[x])/√(Var[x] + ε)·γ + β with the biased variance; γ starts at 1, β at 0.
/// Task-batched (<see cref="Binding.Tasks"/> = T): x [T, ..., *normalized], γ and β [T, *normalized].
/// </summary>
public sealed class LayerNorm : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

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

    /// <inheritdoc/>
    protected override string ExtraRepr() =>
        $"({string.Join(", ", _normalizedShape)}{(_normalizedShape.Length == 1 ? "," : "")}), eps={Py(Eps)}, elementwise_affine={Py(_weight is not null)}";

    /// <summary>γ, or null without elementwise affine.</summary>
    public Parameter? Weight => _weight;

    /// <summary>β, or null without elementwise affine.</summary>
    public Parameter? Bias => _bias;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int k = _normalizedShape.Length;
        int tasks = Binding.Tasks;
        if (tasks > 0)
        {
            TaskBatch.CheckTasks($"LayerNorm([{string.Join(", ", _normalizedShape)}])", input, tasks, $"[T={tasks}, ..., {string.Join(", ", _normalizedShape)}]");
        }
        bool matches = input.Rank >= k + (tasks > 0 ? 1 : 0);
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
            y = y * PerTask(_weight.Value, input.Rank, tasks);
        }
        if (_bias is not null)
        {
            y = y + PerTask(_bias.Value, input.Rank, tasks);
        }
        return y;
    }

    /// <summary>A task-batched affine parameter [T, *normalized] as [T, 1, ..., 1, *normalized], to broadcast over [T, ..., *normalized].</summary>
    private Tensor PerTask(Tensor parameter, int inputRank, int tasks)
    {
        if (tasks == 0)
        {
            return parameter;
        }
        var dims = Enumerable.Repeat(1, inputRank).ToArray();
        dims[0] = tasks;
        for (int i = 0; i < _normalizedShape.Length; i++)
        {
            dims[inputRank - _normalizedShape.Length + i] = _normalizedShape[i];
        }
        return parameter.Reshape(dims);
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

/// <summary>Batch normalization over [N, C] or [N, C, L] inputs (torch.nn.BatchNorm1d); see <see cref="BatchNorm"/>.</summary>
/// <param name="numFeatures">C.</param>
/// <param name="eps">Added to the variance.</param>
/// <param name="momentum">Weight of each new batch in the running statistics; null for a cumulative average.</param>
/// <param name="affine">Learnable γ (ones) and β (zeros).</param>
/// <param name="trackRunningStats">Keep running statistics and use them in evaluation mode.</param>
public sealed class BatchNorm1d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
    : BatchNorm(numFeatures, eps, momentum, affine, trackRunningStats)
{
    /// <inheritdoc/>
    protected override void CheckInput(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank is not (2 or 3) || input.Shape[1] != NumFeatures)
        {
            throw new ArgumentException($"BatchNorm1d({NumFeatures}) expects input [N, {NumFeatures}] or [N, {NumFeatures}, L]; got {input.Describe()}.", nameof(input));
        }
    }

    private protected override void CheckTaskInput(Tensor input, int tasks)
    {
        TaskBatch.CheckTasks($"BatchNorm1d({NumFeatures})", input, tasks, $"[T={tasks}, N, {NumFeatures}] or [T={tasks}, N, {NumFeatures}, L]");
        if (input.Rank is not (3 or 4) || input.Shape[2] != NumFeatures)
        {
            throw new ArgumentException($"BatchNorm1d({NumFeatures}), task-batched over {tasks} tasks, expects input [T={tasks}, N, {NumFeatures}] or [T={tasks}, N, {NumFeatures}, L]; got {input.Describe()}.", nameof(input));
        }
    }
}

