// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title ERC-8004 validation registry for the local devnet.
/// @notice Emits the deployed v1 events byte for byte. A request is made by the agent's owner or
/// an operator and identified by its hash; only the named validator responds (0-100), as often
/// as it likes. The `*Batch` functions emit many events per transaction for benchmarks.
/// Rebuild the artifacts with `npm run build:contracts` after editing this file.
interface IIdentityRegistry {
    function ownerOf(uint256 tokenId) external view returns (address);
    function isApprovedForAll(address owner, address operator) external view returns (bool);
    function getApproved(uint256 tokenId) external view returns (address);
}

contract ValidationRegistry {
    struct Status {
        address validatorAddress;
        uint8 response;
        bool hasResponse;
        uint256 agentId;
        bytes32 responseHash;
        string tag;
        uint256 lastUpdate;
    }

    struct RequestInput {
        address validatorAddress;
        uint256 agentId;
        string requestURI;
        bytes32 requestHash;
    }

    struct ResponseInput {
        bytes32 requestHash;
        uint8 response;
        string responseURI;
        bytes32 responseHash;
        string tag;
    }

    event ValidationRequest(
        address indexed validatorAddress, uint256 indexed agentId, string requestURI, bytes32 indexed requestHash
    );
    event ValidationResponse(
        address indexed validatorAddress,
        uint256 indexed agentId,
        bytes32 indexed requestHash,
        uint8 response,
        string responseURI,
        bytes32 responseHash,
        string tag
    );

    address private immutable _identityRegistry;
    mapping(bytes32 requestHash => Status) private _status;

    constructor(address identityRegistry_) {
        require(identityRegistry_ != address(0), "bad identity registry");
        _identityRegistry = identityRegistry_;
    }

    // -- requests ----------------------------------------------------------------------------

    function validationRequest(
        address validatorAddress,
        uint256 agentId,
        string calldata requestURI,
        bytes32 requestHash
    ) external {
        _request(validatorAddress, agentId, requestHash);
        emit ValidationRequest(validatorAddress, agentId, requestURI, requestHash);
    }

    /// @notice Devnet only: validationRequest for each item, from the caller.
    function validationRequestBatch(RequestInput[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            RequestInput calldata r = items[i];
            _request(r.validatorAddress, r.agentId, r.requestHash);
            emit ValidationRequest(r.validatorAddress, r.agentId, r.requestURI, r.requestHash);
        }
    }

    function _request(address validatorAddress, uint256 agentId, bytes32 requestHash) private {
        require(validatorAddress != address(0), "zero validator");
        IIdentityRegistry identity = IIdentityRegistry(_identityRegistry);
        address owner = identity.ownerOf(agentId);
        require(
            msg.sender == owner || identity.isApprovedForAll(owner, msg.sender)
                || identity.getApproved(agentId) == msg.sender,
            "not authorized"
        );
        Status storage status = _status[requestHash];
        require(status.validatorAddress == address(0), "request exists");
        status.validatorAddress = validatorAddress;
        status.agentId = agentId;
    }

    // -- responses ---------------------------------------------------------------------------

    function validationResponse(
        bytes32 requestHash,
        uint8 response,
        string calldata responseURI,
        bytes32 responseHash,
        string calldata tag
    ) external {
        uint256 agentId = _respond(requestHash, response, responseHash, tag);
        emit ValidationResponse(msg.sender, agentId, requestHash, response, responseURI, responseHash, tag);
    }

    /// @notice Devnet only: validationResponse for each item, from the caller.
    function validationResponseBatch(ResponseInput[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            ResponseInput calldata r = items[i];
            uint256 agentId = _respond(r.requestHash, r.response, r.responseHash, r.tag);
            emit ValidationResponse(
                msg.sender, agentId, r.requestHash, r.response, r.responseURI, r.responseHash, r.tag
            );
        }
    }

    function _respond(bytes32 requestHash, uint8 response, bytes32 responseHash, string calldata tag)
        private
        returns (uint256 agentId)
    {
        Status storage status = _status[requestHash];
        require(status.validatorAddress != address(0), "unknown request");
        require(status.validatorAddress == msg.sender, "not the validator");
        require(response <= 100, "response > 100");
        status.response = response;
        status.hasResponse = true;
        status.responseHash = responseHash;
        status.tag = tag;
        status.lastUpdate = block.timestamp;
        agentId = status.agentId;
    }

    // -- reads -------------------------------------------------------------------------------

    function getValidationStatus(bytes32 requestHash)
        external
        view
        returns (
            address validatorAddress,
            uint256 agentId,
            uint8 response,
            bytes32 responseHash,
            string memory tag,
            uint256 lastUpdate
        )
    {
        Status storage status = _status[requestHash];
        require(status.validatorAddress != address(0), "unknown request");
        return (
            status.validatorAddress,
            status.agentId,
            status.response,
            status.responseHash,
            status.tag,
            status.lastUpdate
        );
    }

    function getIdentityRegistry() external view returns (address) {
        return _identityRegistry;
    }

    function getVersion() external pure returns (string memory) {
        return "devnet-1";
    }
}
