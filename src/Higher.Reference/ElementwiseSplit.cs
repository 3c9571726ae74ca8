namespace Higher.Reference;

/// <summary>
/// How a large elementwise call is shared between threads: by elements when every operand is
/// full-size or a single value, else by rows of the output's leading dimension, each operand cut
/// along it where it spans it and passed whole where it is broadcast along it. Every output element
/// is still computed by one thread with the same operation, so the split never changes a bit.
/// </summary>
internal readonly struct ElementwiseSplit
{
    /// <summary>Below this many output elements a call runs on one thread.</summary>
    public const long Threshold = 1 << 16;

    private readonly Shape _y;
    private readonly long _rows;
    private readonly bool _flat;

    private ElementwiseSplit(Shape y, long rows, bool flat, int chunks)
    {
        _y = y;
        _rows = rows;
        _flat = flat;
        Chunks = chunks;
    }

    /// <summary>Number of pieces.</summary>
    public int Chunks { get; }

    /// <summary>A plan for an output of shape <paramref name="y"/> and these operand shapes, or false when the call is too small or cannot be cut.</summary>
    public static bool TryPlan(Parallelism threads, Shape y, out ElementwiseSplit split, params ReadOnlySpan<Shape> operands)
    {
        split = default;
        long n = y.Numel;
        if (!threads.Enabled || n < Threshold || n > int.MaxValue)
        {
            return false;
        }
        bool flat = true;
        foreach (var s in operands)
        {
            if (s.Numel != n && s.Numel != 1)
            {
                flat = false;
                break;
            }
        }
        long rows = flat ? n / 64 : y.Rank > 0 ? y.Dims[0] : 1;
        if (rows < 2)
        {
            return false;
        }
        int chunks = (int)Math.Min(Math.Min(4L * threads.MaxDegree, rows), Math.Max(2, n / (Threshold / 4)));
        split = new ElementwiseSplit(y, rows, flat, chunks);
        return true;
    }

    /// <summary>The output piece of chunk <paramref name="c"/>: its first element, element count and shape.</summary>
    public (int Offset, int Length, Shape Shape) Output(int c)
    {
        var (r0, r1) = Rows(c);
        if (_flat)
        {
            // 64-element blocks, the last one taking the remainder.
            long start = r0 * 64, end = c == Chunks - 1 ? _y.Numel : r1 * 64;
            return ((int)start, (int)(end - start), new Shape((int)(end - start)));
        }
        long rowLength = _y.Numel / _y.Dims[0];
        return ((int)(r0 * rowLength), (int)((r1 - r0) * rowLength), WithLeading(_y, (int)(r1 - r0)));
    }

    /// <summary>The piece of an operand of shape <paramref name="s"/> that chunk <paramref name="c"/> reads (the whole operand where it is broadcast).</summary>
    public (int Offset, int Length, Shape Shape) Operand(int c, Shape s)
    {
        if (_flat)
        {
            return s.Numel == 1 ? (0, 1, new Shape(1)) : Output(c);
        }
        if (s.Rank != _y.Rank || s.Dims[0] != _y.Dims[0])
        {
            return (0, checked((int)s.Numel), s);
        }
        var (r0, r1) = Rows(c);
        long rowLength = s.Numel / s.Dims[0];
        return ((int)(r0 * rowLength), (int)((r1 - r0) * rowLength), WithLeading(s, (int)(r1 - r0)));
    }

    private (long From, long To) Rows(int c) => (_rows * c / Chunks, _rows * (c + 1) / Chunks);

    private static Shape WithLeading(Shape s, int leading)
    {
        var dims = s.Dims.ToArray();
        dims[0] = leading;
        return new Shape(dims);
    }
}
