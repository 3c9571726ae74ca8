namespace Higher.Nn;

/// <summary>Batch normalization over the channels of [N, C, H, W] inputs (torch.nn.BatchNorm2d); see <see cref="BatchNorm"/>.</summary>
/// <param name="numFeatures">C.</param>
/// <param name="eps">Added to the variance.</param>
/// <param name="momentum">Weight of each new batch in the running statistics; null for a cumulative average.</param>
/// <param name="affine">Learnable γ (ones) and β (zeros).</param>
/// <param name="trackRunningStats">Keep running statistics and use them in evaluation mode.</param>
public sealed class BatchNorm2d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
    : BatchNorm(numFeatures, eps, momentum, affine, trackRunningStats)
{
    /// <inheritdoc/>
    protected override void CheckInput(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4 || input.Shape[1] != NumFeatures)
        {
            throw new ArgumentException($"BatchNorm2d({NumFeatures}) expects input [N, {NumFeatures}, H, W]; got {input.Describe()}.", nameof(input));
        }
    }

    private protected override void CheckTaskInput(Tensor input, int tasks)
    {
        TaskBatch.CheckTasks($"BatchNorm2d({NumFeatures})", input, tasks, $"[T={tasks}, N, {NumFeatures}, H, W]");
        if (input.Rank != 5 || input.Shape[2] != NumFeatures)
        {
            throw new ArgumentException($"BatchNorm2d({NumFeatures}), task-batched over {tasks} tasks, expects input [T={tasks}, N, {NumFeatures}, H, W]; got {input.Describe()}.", nameof(input));
        }
    }
}
