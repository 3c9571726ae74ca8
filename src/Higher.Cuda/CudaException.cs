using System.Runtime.CompilerServices;

namespace Higher.Cuda;

/// <summary>
/// A native CUDA failure: the status a CUDA runtime, cuBLAS or Higher kernel call returned, its
/// enumerator name, and the call that returned it.
/// </summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates an exception with no status (Status is -1).</summary>
    public CudaException()
        : this("A CUDA call failed.")
    {
    }

    /// <summary>Creates an exception with a message and no status (Status is -1).</summary>
    public CudaException(string message)
        : this(message, null)
    {
    }

    /// <summary>Creates an exception with a message, an inner exception and no status (Status is -1).</summary>
    public CudaException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Status = -1;
        StatusName = "unknown";
        Library = "unknown";
        Expression = "";
    }

    private CudaException(string library, int status, string statusName, string expression, string message)
        : base(message)
    {
        Library = library;
        Status = status;
        StatusName = statusName;
        Expression = expression;
    }

    /// <summary>The numeric status (<c>cudaError_t</c> or <c>cublasStatus_t</c>).</summary>
    public int Status { get; }

    /// <summary>The status's enumerator name, e.g. "cudaErrorMemoryAllocation" or "CUBLAS_STATUS_INVALID_VALUE".</summary>
    public string StatusName { get; }

    /// <summary>Which library returned the status: "cudart", "cublas" or "higher_kernels".</summary>
    public string Library { get; }

    /// <summary>The failing call as written in the source.</summary>
    public string Expression { get; }

    internal static CudaException FromRuntime(CudaError status, string expression, string library)
    {
        int code = (int)status;
        string name = CudaStatus.RuntimeName(code);
        string? description = NativeLibraries.RuntimeLoaded ? NativeLibraries.DescribeRuntimeError(code) : null;
        string message = description is null
            ? $"{expression} failed with {name} ({code})."
            : $"{expression} failed with {name} ({code}): {description}.";
        return new CudaException(library, code, name, expression, message);
    }

    internal static CudaException FromBlas(CublasStatus status, string expression)
    {
        int code = (int)status;
        string name = CudaStatus.BlasName(code);
        return new CudaException("cublas", code, name, expression, $"{expression} failed with {name} ({code}).");
    }
}

/// <summary>The one place native statuses are checked.</summary>
internal static class Check
{
    /// <summary>Throws a <see cref="CudaException"/> naming <paramref name="expression"/> unless <paramref name="status"/> is success.</summary>
    public static void ThrowIfFailed(CudaError status, [CallerArgumentExpression(nameof(status))] string expression = "")
    {
        if (status != CudaError.Success)
        {
            // Our kernels return cudaError_t too; their imports are the hk_ functions.
            string library = expression.Contains("hk_", StringComparison.Ordinal) ? "higher_kernels" : "cudart";
            throw CudaException.FromRuntime(status, expression, library);
        }
    }

    /// <summary>Throws a <see cref="CudaException"/> naming <paramref name="expression"/> unless <paramref name="status"/> is success.</summary>
    public static void ThrowIfFailed(CublasStatus status, [CallerArgumentExpression(nameof(status))] string expression = "")
    {
        if (status != CublasStatus.Success)
        {
            throw CudaException.FromBlas(status, expression);
        }
    }
}
