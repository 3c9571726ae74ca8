namespace Higher;

/// <summary>
/// Anomaly detection, like torch's <c>detect_anomaly</c>: inside <see cref="Autograd.DetectAnomaly"/>,
/// the first NaN or infinity produced by a recorded forward op, by a backward, or by an optimizer's
/// update throws <see cref="AnomalyException"/> naming the op, its operands' shapes and dtypes, and
/// (for a backward) the stack of the forward call that recorded it. Off by default, and free then:
/// one read of a counter per recorded op. On, every checked result is read back to the host.
/// </summary>
public sealed class AnomalyException : ArithmeticException
{
    /// <summary>Creates the exception.</summary>
    public AnomalyException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public AnomalyException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public AnomalyException(string message, Exception innerException) : base(message, innerException)
    {
    }
}

/// <summary>The scope of <see cref="Autograd.DetectAnomaly"/>: disposing it ends detection on this flow.</summary>
public sealed class AnomalyScope : IDisposable
{
    private static readonly AsyncLocal<int> Depth = new();
    private static int s_active;
    private bool _disposed;

    internal AnomalyScope()
    {
        Depth.Value++;
        Interlocked.Increment(ref s_active);
    }

    /// <summary>True when detection is on for the calling flow (a static counter is read first, so this is nearly free when no scope exists anywhere).</summary>
    internal static bool On => Volatile.Read(ref s_active) != 0 && Depth.Value > 0;

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        Depth.Value--;
        Interlocked.Decrement(ref s_active);
    }

    /// <summary>The index of the first non-finite element of <paramref name="t"/>, or -1 (floating tensors only).</summary>
    internal static long FirstNonFinite(Tensor t)
    {
        if (!t.DType.IsFloatingPoint() || t.Numel == 0)
        {
            return -1;
        }
        var values = t.ToDoubleArray();
        for (long i = 0; i < values.Length; i++)
        {
            if (!double.IsFinite(values[i]))
            {
                return i;
            }
        }
        return -1;
    }

    internal static string Operands(Tensor[] inputs) => string.Join(", ", inputs.Select(x => $"{x.Describe()} on {x.Device}"));
}
