namespace Higher.Distributed;

/// <summary>
/// A failure of a distributed operation: the MPI or NCCL library missing or unsupported, a collective
/// that returned an error (named with its call, the rank and the library's own message), or ranks that
/// disagree on what they pass to a collective (their shapes, dtypes or devices, rank by rank).
/// </summary>
public sealed class DistributedException : Exception
{
    /// <summary>An exception with a message.</summary>
    public DistributedException(string message)
        : base(message)
    {
    }

    /// <summary>An exception with a message and its cause.</summary>
    public DistributedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>An exception with no message (for serializers; prefer the other constructors).</summary>
    public DistributedException()
    {
    }

    /// <summary>The native call that failed (e.g. "MPI_Allreduce"), or null when no native call failed.</summary>
    public string? Call { get; init; }

    /// <summary>The library's error code (MPI error class or ncclResult_t), or 0.</summary>
    public int ErrorCode { get; init; }
}
