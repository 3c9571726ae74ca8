namespace Higher.Distributed;

/// <summary>
/// The tasks [<see cref="Start"/>, <see cref="Start"/> + <see cref="Count"/>) of a meta-batch that one
/// rank runs. <see cref="For"/> splits a meta-batch of T tasks over S ranks into contiguous blocks in
/// rank order: rank r gets ⌊T/S⌋ tasks, plus one more when r &lt; T mod S. Every rank computes the same
/// split from (T, S) alone, so no communication is needed, and the blocks, taken in rank order, are
/// the meta-batch in its own order (rank 0 holds the first tasks).
/// </summary>
/// <param name="Start">Index of the rank's first task in the meta-batch.</param>
/// <param name="Count">Number of tasks of the rank (0 when there are more ranks than tasks).</param>
public readonly record struct TaskRange(int Start, int Count)
{
    /// <summary>One past the rank's last task.</summary>
    public int End => Start + Count;

    /// <summary>Whether task <paramref name="task"/> of the meta-batch belongs to this range.</summary>
    public bool Contains(int task) => task >= Start && task < End;

    /// <summary>
    /// The block of rank <paramref name="rank"/> when <paramref name="tasks"/> tasks are split over
    /// <paramref name="size"/> ranks: Count = ⌊T/S⌋ + (r &lt; T mod S ? 1 : 0), Start = r·⌊T/S⌋ + min(r, T mod S).
    /// </summary>
    public static TaskRange For(int tasks, int rank, int size)
    {
        if (tasks < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(tasks), tasks, "TaskRange.For: the meta-batch size must be 0 or more.");
        }
        if (size < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "TaskRange.For: the number of ranks must be at least 1.");
        }
        if (rank < 0 || rank >= size)
        {
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"TaskRange.For: rank must be in [0, {size}) for {size} ranks.");
        }
        int per = tasks / size;
        int extra = tasks % size;
        return new TaskRange((rank * per) + Math.Min(rank, extra), per + (rank < extra ? 1 : 0));
    }
}
