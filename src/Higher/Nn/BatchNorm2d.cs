namespace Higher.Nn;

/// <summary>
/// Batch normalization over the channels of [N, C, H, W] inputs (torch.nn.BatchNorm2d):
/// <see cref="Tensor.BatchNorm(Tensor, Tensor?, Tensor?, Tensor?, Tensor?, bool, double)"/> with the
/// batch mean and biased variance over (N, H, W) in training mode, or, in evaluation mode with
/// tracked statistics, the running ones. Training with tracking updates the buffers
/// running_mean ← (1-m)·running_mean + m·mean and running_var ← (1-m)·running_var + m·unbiased
/// variance, where m is the momentum, or 1/num_batches_tracked when the momentum is null (a
/// cumulative average); num_batches_tracked counts the training batches. Buffers are replaced
/// through <see cref="ModuleBuffer.Value"/> by new tensors computed without recording, so a
/// functional call updates its own copies and never the module's.
/// </summary>
public sealed class BatchNorm2d : Module
{
    private readonly BatchNormState _state;

    /// <summary>Batch norm over <paramref name="numFeatures"/> channels.</summary>
    /// <param name="numFeatures">C.</param>
    /// <param name="eps">Added to the variance.</param>
    /// <param name="momentum">Weight of each new batch in the running statistics; null for a cumulative average.</param>
    /// <param name="affine">Learnable γ (ones) and β (zeros).</param>
    /// <param name="trackRunningStats">Keep running statistics and use them in evaluation mode.</param>
    public BatchNorm2d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
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
        if (input.Rank != 4 || input.Shape[1] != NumFeatures)
        {
            throw new ArgumentException($"BatchNorm2d({NumFeatures}) expects input [N, {NumFeatures}, H, W]; got {input.Describe()}.", nameof(input));
        }
        return _state.Forward(input, Training, TrackRunningStats, Momentum, Eps);
    }

    /// <summary>Resets the running statistics to mean 0, variance 1 and no batches (through the buffers, so a functional call resets its copies).</summary>
    public void ResetRunningStats() => _state.ResetRunningStats();

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter) => _state.OnParameterReplaced(name, parameter);
}

/// <summary>
/// The parameters, buffers and forward pass shared by the batch-norm layers (any input [N, C, ...]
/// once the layer has checked its rank): normalization through
/// <see cref="Tensor.BatchNorm(Tensor, Tensor?, Tensor?, Tensor?, Tensor?, bool, double)"/> and the
/// running-statistics update of torch's _BatchNorm.forward.
/// </summary>
internal sealed class BatchNormState(Parameter? weight, Parameter? bias, ModuleBuffer runningMean, ModuleBuffer runningVar, ModuleBuffer numBatchesTracked)
{
    public Parameter? Weight { get; private set; } = weight;

    public Parameter? Bias { get; private set; } = bias;

    public ModuleBuffer RunningMean { get; } = runningMean;

    public ModuleBuffer RunningVar { get; } = runningVar;

    public ModuleBuffer NumBatchesTracked { get; } = numBatchesTracked;

    public Tensor Forward(Tensor input, bool training, bool trackRunningStats, double? momentum, double eps)
    {
        // As torch: the count advances before the factor is read, so a cumulative average (null
        // momentum) weighs the k-th batch by 1/k.
        double factor = momentum ?? 0;
        if (training && trackRunningStats && NumBatchesTracked.Value is { } count)
        {
            using var noGrad = Autograd.NoGrad();
            var next = count + 1;
            NumBatchesTracked.Value = next;
            factor = momentum ?? 1.0 / next.Item();
        }
        var runningMean = !training || trackRunningStats ? RunningMean.Value : null;
        var runningVar = !training || trackRunningStats ? RunningVar.Value : null;
        bool useBatchStats = training || (runningMean is null && runningVar is null);
        var y = Tensor.BatchNorm(input, runningMean, runningVar, Weight?.Value, Bias?.Value, useBatchStats, eps, out var batchMean, out var batchVar);
        if (useBatchStats && runningMean is not null && runningVar is not null)
        {
            using var noGrad = Autograd.NoGrad();
            long n = input.Numel / input.Shape[1];
            var unbiased = batchVar!.Detach() * ((double)n / (n - 1));
            RunningMean.Value = (batchMean!.Detach() * factor) + (runningMean * (1 - factor));
            RunningVar.Value = (unbiased * factor) + (runningVar * (1 - factor));
        }
        return y;
    }

    public void ResetRunningStats()
    {
        using var noGrad = Autograd.NoGrad();
        if (RunningMean.Value is { } mean)
        {
            RunningMean.Value = Tensor.ZerosLike(mean);
        }
        if (RunningVar.Value is { } variance)
        {
            RunningVar.Value = Tensor.OnesLike(variance);
        }
        if (NumBatchesTracked.Value is { } count)
        {
            NumBatchesTracked.Value = Tensor.ZerosLike(count);
        }
    }

    public void OnParameterReplaced(string name, Parameter? parameter)
    {
        if (name == "weight")
        {
            Weight = parameter;
        }
        else if (name == "bias")
        {
            Bias = parameter;
        }
    }
}
