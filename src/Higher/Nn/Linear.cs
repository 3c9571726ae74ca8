namespace Higher.Nn;

/// <summary>
/// y = x·Wᵀ + b for x [..., in], W [out, in], b [out] (torch.nn.Linear). Initialization as
/// PyTorch's: W ~ U(-1/√in, 1/√in) (kaiming_uniform with a = √5) and b ~ U(-1/√in, 1/√in).
/// Task-batched (<see cref="Binding.Tasks"/> = T): y[t] = x[t]·W[t]ᵀ + b[t] for x [T, ..., in],
/// W [T, out, in], b [T, out], one batched GEMM.
/// </summary>
public sealed class Linear : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    private Parameter _weight;
    private Parameter? _bias;

    /// <summary>A layer from <paramref name="inFeatures"/> to <paramref name="outFeatures"/>, drawing its initial weights from <paramref name="generator"/>.</summary>
    public Linear(int inFeatures, int outFeatures, bool bias = true, Generator? generator = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegative(outFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        var w = Tensor.Zeros([outFeatures, inFeatures]);
        if (inFeatures > 0)
        {
            Init.KaimingUniform(w, Math.Sqrt(5), generator: generator);
        }
        _weight = RegisterParameter("weight", w)!;
        if (bias)
        {
            double bound = inFeatures > 0 ? 1 / Math.Sqrt(inFeatures) : 0;
            _bias = RegisterParameter("bias", Tensor.Uniform([outFeatures], -bound, bound, generator: generator));
        }
        else
        {
            _bias = RegisterParameter("bias", (Parameter?)null);
        }
    }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"in_features={InFeatures}, out_features={OutFeatures}, bias={Py(_bias is not null)}";

    /// <summary>Size of each input sample.</summary>
    public int InFeatures { get; }

    /// <summary>Size of each output sample.</summary>
    public int OutFeatures { get; }

    /// <summary>The weight handle [out, in].</summary>
    public Parameter Weight => _weight;

    /// <summary>The bias handle [out], or null without bias.</summary>
    public Parameter? Bias => _bias;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Binding.Tasks > 0
        ? TaskBatch.Linear($"Linear({InFeatures}, {OutFeatures})", input, _weight.Value, _bias?.Value)
        : Tensor.Linear(input, _weight.Value, _bias?.Value);

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter)
    {
        if (name == "weight")
        {
            _weight = parameter ?? throw new ArgumentNullException(nameof(parameter), "Linear needs a weight.");
        }
        else if (name == "bias")
        {
            _bias = parameter;
        }
    }
}

/// <summary>y = x (torch.nn.Identity).</summary>
public sealed class Identity : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input;
}

/// <summary>Merges dimensions start..end (inclusive) into one (torch.nn.Flatten; by default all but the batch dimension).</summary>
public sealed class Flatten(int startDim = 1, int endDim = -1) : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <summary>First merged dimension.</summary>
    public int StartDim { get; } = startDim;

    /// <summary>Last merged dimension.</summary>
    public int EndDim { get; } = endDim;

    /// <inheritdoc/>
    /// <remarks>Task-batched, the dimensions count after the task dimension: [T, B, ...] flattens as each task's [B, ...] would.</remarks>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (Binding.Tasks is > 0 and var tasks)
        {
            TaskBatch.CheckTasks($"Flatten({StartDim}, {EndDim})", input, tasks, $"[T={tasks}, ...]");
            return input.Flatten(StartDim >= 0 ? StartDim + 1 : StartDim, EndDim >= 0 ? EndDim + 1 : EndDim);
        }
        return input.Flatten(StartDim, EndDim);
    }
}
