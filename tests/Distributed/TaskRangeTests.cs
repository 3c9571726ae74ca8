namespace Higher.Distributed.Tests;

/// <summary>The split of a meta-batch over ranks: a partition in rank order, balanced to one task.</summary>
public sealed class TaskRangeTests
{
    [Fact]
    public void EveryMetaBatchAndSize_IsPartitionedInOrder_Balanced()
    {
        for (int tasks = 0; tasks <= 40; tasks++)
        {
            for (int size = 1; size <= 9; size++)
            {
                int next = 0;
                for (int rank = 0; rank < size; rank++)
                {
                    var range = TaskRange.For(tasks, rank, size);
                    Assert.Equal(next, range.Start);
                    Assert.True(range.Count == tasks / size || range.Count == (tasks / size) + 1, $"T={tasks}, S={size}, r={rank}: {range}");
                    // The larger blocks come first.
                    Assert.Equal(rank < tasks % size ? (tasks / size) + 1 : tasks / size, range.Count);
                    next = range.End;
                }
                Assert.Equal(tasks, next);
            }
        }
    }

    [Fact]
    public void Examples()
    {
        Assert.Equal(new TaskRange(0, 3), TaskRange.For(5, 0, 2));
        Assert.Equal(new TaskRange(3, 2), TaskRange.For(5, 1, 2));
        Assert.Equal(new TaskRange(5, 2), TaskRange.For(25, 2, 12));
        Assert.Equal(new TaskRange(2, 0), TaskRange.For(2, 3, 4));
        Assert.True(TaskRange.For(5, 1, 2).Contains(3));
        Assert.False(TaskRange.For(5, 1, 2).Contains(2));
    }

    [Fact]
    public void BadArguments_AreRefusedByName()
    {
        Assert.Contains("rank must be in [0, 2)", Assert.Throws<ArgumentOutOfRangeException>(() => TaskRange.For(5, 2, 2)).Message, StringComparison.Ordinal);
        Assert.Equal("size", Assert.Throws<ArgumentOutOfRangeException>(() => TaskRange.For(5, 0, 0)).ParamName);
        Assert.Equal("tasks", Assert.Throws<ArgumentOutOfRangeException>(() => TaskRange.For(-1, 0, 1)).ParamName);
    }
}
