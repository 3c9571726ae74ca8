namespace Higher.Nn;

/// <summary>
/// Batch normalization over the channels of [N, C, ...] inputs, as torch's _BatchNorm:
/// <see cref="Tensor.BatchNorm(Tensor, Tensor?, Tensor?, Tensor?, Tensor?, bool, double)"/> with the
/// batch mean and biased variance in training mode, or, in evaluation mode with tracked statistics,
/// the running ones. Training with tracking updates the buffers
/// running_mean ← (1-m)·running_mean + m·mean and running_var ← (1-m)·running_var + m·unbiased
/// variance, where m is the momentum, or 1/num_batches_tracked when the momentum is null (a
/// cumulative average); num_batches_tracked counts the training batches. Buffers are replaced
/// through <see cref="ModuleBuffer.Value"/> by new tensors computed without recording, so a
/// functional call updates its own copies and never the module's. Subclasses check the input rank.
/// Task-batched (<see cref="Binding.Tasks"/> = T): x [T, N, C, ...], γ, β and the running statistics
/// [T, C], each task normalized with its own batch statistics and updating its own buffers (one
/// batch norm over the tasks folded into the channels, [N, T·C, ...]).
/// </summary>
public abstract class BatchNorm : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => GetType().Assembly == typeof(BatchNorm).Assembly;

    /// <summary>Batch norm over <paramref name="numFeatures"/> channels.</summary>
    /// <param name="numFeatures">C.</param>
    /// <param name="eps">Added to the variance.</param>
    /// <param name="momentum">Weight of each new batch in the running statistics; null for a cumulative average.</param>
    /// <param name="affine">Learnable γ (ones) and β (zeros).</param>
    /// <param name="trackRunningStats">Keep running statistics and use them in evaluation mode.</param>
    private protected BatchNorm(int numFeatures, double eps, double? momentum, bool affine, bool trackRunningStats)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numFeatures);
        NumFeatures = numFeatures;
        Eps = eps;
        Momentum = momentum;
        TrackRunningStats = trackRunningStats;
        Weight = RegisterParameter("weight", affine ? Tensor.Ones([numFeatures]) : null);
        Bias = RegisterParameter("bias", affine ? Tensor.Zeros([numFeatures]) : null);
        RunningMean = RegisterBuffer("running_mean", trackRunningStats ? Tensor.Zeros([numFeatures]) : null);
        RunningVar = RegisterBuffer("running_var", trackRunningStats ? Tensor.Ones([numFeatures]) : null);
        NumBatchesTracked = RegisterBuffer("num_batches_tracked", trackRunningStats ? Tensor.Zeros(Shape.Scalar, DType.Int64) : null);
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
    public Parameter? Weight { get; private set; }

    /// <summary>β [C], or null without affine.</summary>
    public Parameter? Bias { get; private set; }

    /// <summary>The running-mean buffer handle (its value is null without tracking).</summary>
    public ModuleBuffer RunningMean { get; }

    /// <summary>The running-variance buffer handle (its value is null without tracking).</summary>
    public ModuleBuffer RunningVar { get; }

    /// <summary>The batch-count buffer handle, an int64 scalar (its value is null without tracking).</summary>
    public ModuleBuffer NumBatchesTracked { get; }

    /// <inheritdoc/>
    protected override string ExtraRepr() =>
        $"{NumFeatures}, eps={Py(Eps)}, momentum={(Momentum is { } m ? Py(m) : "None")}, affine={Py(Weight is not null)}, track_running_stats={Py(TrackRunningStats)}";

    /// <summary>Throws naming the expected shape unless <paramref name="input"/> suits this layer.</summary>
    protected abstract void CheckInput(Tensor input);

    /// <summary>Throws naming the expected shape unless <paramref name="input"/> suits this layer task-batched over <paramref name="tasks"/> tasks.</summary>
    private protected abstract void CheckTaskInput(Tensor input, int tasks);

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int tasks = Binding.Tasks;
        if (tasks > 0)
        {
            CheckTaskInput(input, tasks);
        }
        else
        {
            CheckInput(input);
        }
        // As torch: the count advances before the factor is read, so a cumulative average (null
        // momentum) weighs the k-th batch by 1/k.
        bool training = Training;
        double factor = Momentum ?? 0;
        Tensor? nextCount = null;
        if (training && TrackRunningStats && NumBatchesTracked.Value is { } count)
        {
            using var noGrad = Autograd.NoGrad();
            nextCount = count + 1;
            // Task-batched, every task has seen the same batches: the per-task counts are equal, and one is read.
            factor = Momentum ?? 1.0 / (tasks > 0 ? nextCount.Reshape(-1).Select(0, 0) : nextCount).Item();
        }
        var runningMean = !training || TrackRunningStats ? RunningMean.Value : null;
        var runningVar = !training || TrackRunningStats ? RunningVar.Value : null;
        bool useBatchStats = training || (runningMean is null && runningVar is null);
        Tensor y;
        Tensor? batchMean, batchVar; // in training: the batch statistics, [C] (or [T, C] task-batched)
        long perChannel;
        if (tasks > 0)
        {
            // The tasks folded into the channels, so each (task, channel) pair has its own statistics.
            var dims = input.Shape.ToArray();
            int batch = dims[1], channels = dims[2];
            var folded = (batch == 1 ? input : input.Transpose(0, 1)).Reshape([batch, tasks * channels, .. dims[3..]]);
            var z = Tensor.BatchNorm(folded, runningMean?.Reshape(-1), runningVar?.Reshape(-1), Weight?.Value.Reshape(-1), Bias?.Value.Reshape(-1),
                useBatchStats, Eps, out var foldedMean, out var foldedVar);
            var unfolded = z.Reshape([batch, tasks, channels, .. dims[3..]]);
            y = batch == 1 ? unfolded.Reshape(dims) : unfolded.Transpose(0, 1);
            (batchMean, batchVar) = (foldedMean?.Reshape(tasks, channels), foldedVar?.Reshape(tasks, channels));
            perChannel = folded.Numel / (tasks * channels);
        }
        else
        {
            y = Tensor.BatchNorm(input, runningMean, runningVar, Weight?.Value, Bias?.Value, useBatchStats, Eps, out batchMean, out batchVar);
            perChannel = input.Numel / input.Shape[1];
        }
        // The buffers are written only once the forward has succeeded: a forward that throws (an
        // input of another dtype, say) leaves the count and the statistics as they were.
        Tensor? newMean = null, newVar = null;
        if (useBatchStats && runningMean is not null && runningVar is not null)
        {
            using var noGrad = Autograd.NoGrad();
            var unbiased = batchVar!.Detach() * ((double)perChannel / (perChannel - 1));
            newMean = (batchMean!.Detach() * factor) + (runningMean * (1 - factor));
            newVar = (unbiased * factor) + (runningVar * (1 - factor));
        }
        if (nextCount is not null)
        {
            NumBatchesTracked.Value = nextCount;
        }
        if (newMean is not null)
        {
            RunningMean.Value = newMean;
            RunningVar.Value = newVar;
        }
        return y;
    }

    /// <summary>Resets the running statistics to mean 0, variance 1 and no batches (through the buffers, so a functional call resets its copies).</summary>
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

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter)
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
