namespace Higher.Functional;

/// <summary>
/// Losses that keep the task dimension of a task-batched inner loop (<see cref="InnerLoop.CreateBatched"/>):
/// for predictions [T, B, ...] they return [T], task t's loss reduced over its own elements only, exactly
/// what the loss of <see cref="F"/> gives on task t alone. The sum over tasks (what
/// <see cref="DifferentiableOptimizer.Step"/> differentiates) then gives each task's weights their own
/// task's gradient; a meta-objective is usually the mean or the sum of the [T] query losses.
/// </summary>
public static class TaskLosses
{
    /// <summary>loss[t] = mean over task t's elements of (input - target)² (<see cref="F.MseLoss"/> per task).</summary>
    public static Tensor Mse(Tensor input, Tensor target)
    {
        CheckPair("TaskLosses.Mse", input, target);
        var d = input - target;
        return PerTaskMean(d * d);
    }

    /// <summary>loss[t] = mean over task t's elements of |input - target| (<see cref="F.L1Loss"/> per task).</summary>
    public static Tensor L1(Tensor input, Tensor target)
    {
        CheckPair("TaskLosses.L1", input, target);
        return PerTaskMean((input - target).Abs());
    }

    /// <summary>loss[t] = mean over task t's elements of softplus(x) - x·y (<see cref="F.BinaryCrossEntropyWithLogits"/> per task).</summary>
    public static Tensor BinaryCrossEntropyWithLogits(Tensor logits, Tensor target)
    {
        CheckPair("TaskLosses.BinaryCrossEntropyWithLogits", logits, target);
        return PerTaskMean(logits.Softplus() - logits * target);
    }

    /// <summary>
    /// loss[t] = the mean cross entropy of task t's logits [B, C] against its int64 classes [B]
    /// (<see cref="F.CrossEntropy"/> per task), for logits [T, B, C] and target [T, B].
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor target, double labelSmoothing = 0)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(target);
        if (logits.Rank != 3 || target.Rank != 2 || target.Shape[0] != logits.Shape[0] || target.Shape[1] != logits.Shape[1])
        {
            throw new ArgumentException($"TaskLosses.CrossEntropy: expected logits [T, B, C] and target [T, B]; got logits {logits.Shape} and target {target.Shape}.");
        }
        int tasks = logits.Shape[0], batch = logits.Shape[1];
        var losses = F.CrossEntropy(logits.Reshape(tasks * batch, logits.Shape[2]), target.Reshape(tasks * batch), Reduction.None, labelSmoothing);
        return losses.Reshape(tasks, batch).Mean(1);
    }

    /// <summary>The mean over every dimension but the first: [T, ...] to [T].</summary>
    public static Tensor PerTaskMean(Tensor losses)
    {
        ArgumentNullException.ThrowIfNull(losses);
        if (losses.Rank < 1)
        {
            throw new ArgumentException($"TaskLosses.PerTaskMean: losses {losses.Describe()} have no task dimension; expected [T, ...].", nameof(losses));
        }
        return losses.Rank == 1 ? losses : losses.Mean(Enumerable.Range(1, losses.Rank - 1).ToArray());
    }

    private static void CheckPair(string loss, Tensor input, Tensor target)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(target);
        if (input.Shape != target.Shape || input.Rank < 1)
        {
            throw new ArgumentException($"{loss}: input {input.Shape} and target {target.Shape} must have one shape [T, ...], the task dimension first.");
        }
        if (!input.DType.IsFloatingPoint() || input.DType != target.DType || input.Device != target.Device)
        {
            throw new ArgumentException(
                $"{loss}: input ({input.Describe()} on {input.Device}) and target ({target.Describe()} on {target.Device}) must be floating-point tensors of one dtype on one device.");
        }
    }
}
