namespace Higher.Distributed;

/// <summary>How an allreduce combines the ranks' tensors, element by element.</summary>
public enum CollectiveOp
{
    /// <summary>y = Σ_r x_r over the ranks r.</summary>
    Sum,

    /// <summary>y = (Σ_r x_r) / size: the sum, then one division by the number of ranks.</summary>
    Mean,

    /// <summary>y = max_r x_r.</summary>
    Max,

    /// <summary>y = min_r x_r.</summary>
    Min,
}
