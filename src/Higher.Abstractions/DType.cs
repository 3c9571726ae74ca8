namespace Higher;

/// <summary>Element type of a tensor. Float32 and Float64 carry gradients; Int64 holds indices and Bool masks.</summary>
public enum DType
{
    /// <summary>IEEE 754 binary32.</summary>
    Float32 = 0,
    /// <summary>IEEE 754 binary64.</summary>
    Float64 = 1,
    /// <summary>Signed 64-bit integer, used for indices.</summary>
    Int64 = 2,
    /// <summary>Boolean mask stored as one byte per element (0 or 1).</summary>
    Bool = 3,
}

/// <summary>Facts about <see cref="DType"/> values.</summary>
public static class DTypeInfo
{
    /// <summary>Size in bytes of one element of <paramref name="dtype"/>.</summary>
    public static int SizeOf(this DType dtype) => dtype switch
    {
        DType.Float32 => 4,
        DType.Float64 => 8,
        DType.Int64 => 8,
        DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown dtype."),
    };

    /// <summary>True for Float32 and Float64, the dtypes that can require gradients.</summary>
    public static bool IsFloatingPoint(this DType dtype) => dtype is DType.Float32 or DType.Float64;

    /// <summary>Lower-case name as PyTorch prints it (float32, float64, int64, bool).</summary>
    public static string Name(this DType dtype) => dtype switch
    {
        DType.Float32 => "float32",
        DType.Float64 => "float64",
        DType.Int64 => "int64",
        DType.Bool => "bool",
        _ => dtype.ToString(),
    };
}
